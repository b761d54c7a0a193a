"""Hypothesis-generated invocation sequences over a small alphabet, compared with the real
ovs-vsctl (network.md §10)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ovs.oracle import compare

pytestmark = pytest.mark.ovs

BR = st.sampled_from(["br0", "br1", "br0.10"])
PORT = st.sampled_from(["p1", "p2", "eth0", "eth1"])
NAME = st.sampled_from(["br0", "br1", "br0.10", "p1", "p2", "eth0", "eth1"])
VLAN = st.sampled_from(["0", "10", "4095", "4096"])
SETTING = st.sampled_from(["tag=0", "tag=10", "tag=4095", "tag=4096", "trunks=10", "vlan_mode=access"])


def _opt(*names: str):
    return st.lists(st.sampled_from(names), max_size=1)


CMD = st.one_of(
    st.tuples(_opt("--may-exist"), st.just("add-br"), BR).map(lambda t: [*t[0], t[1], t[2]]),
    st.tuples(_opt("--may-exist"), BR, BR, VLAN).map(lambda t: [*t[0], "add-br", t[1], t[2], t[3]]),
    st.tuples(_opt("--if-exists"), BR).map(lambda t: [*t[0], "del-br", t[1]]),
    st.tuples(_opt("--real", "--fake")).map(lambda t: [*t[0], "list-br"]),
    st.tuples(
        st.sampled_from(
            [
                "br-exists",
                "br-to-vlan",
                "br-to-parent",
                "list-ports",
                "list-ifaces",
                "get-controller",
                "get-fail-mode",
                "br-get-external-id",
            ]
        ),
        BR,
    ).map(list),
    st.tuples(_opt("--may-exist"), BR, PORT, st.lists(SETTING, max_size=1)).map(
        lambda t: [*t[0], "add-port", t[1], t[2], *t[3]]
    ),
    st.tuples(_opt("--may-exist"), BR, PORT, st.lists(PORT, min_size=2, max_size=2)).map(
        lambda t: [*t[0], "add-bond", t[1], t[2], *t[3]]
    ),
    st.tuples(_opt("--if-exists", "--with-iface"), st.lists(BR, max_size=1), NAME).map(
        lambda t: [*t[0], "del-port", *t[1], t[2]]
    ),
    st.tuples(st.sampled_from(["port-to-br", "iface-to-br"]), NAME).map(list),
    st.tuples(_opt("--may-exist"), PORT, PORT).map(lambda t: [*t[0], "add-bond-iface", t[1], t[2]]),
    st.tuples(_opt("--if-exists"), st.lists(PORT, max_size=1), PORT).map(
        lambda t: [*t[0], "del-bond-iface", *t[1], t[2]]
    ),
    st.tuples(
        _opt("--if-exists"),
        PORT,
        st.sampled_from(["tag", "trunks", "name", "vlan_mode", "external_ids:k", "fake_bridge"]),
    ).map(lambda t: [*t[0], "get", "port", t[1], t[2]]),
    st.tuples(_opt("--if-exists"), PORT, SETTING).map(lambda t: [*t[0], "set", "port", t[1], t[2]]),
    st.tuples(_opt("--if-exists"), PORT, st.sampled_from(["tag", "trunks"])).map(
        lambda t: [*t[0], "clear", "port", t[1], t[2]]
    ),
    st.tuples(NAME, st.sampled_from(["type", "name"])).map(lambda t: ["get", "interface", t[0], t[1]]),
    st.tuples(BR).map(lambda t: ["set-controller", t[0], "tcp:1.2.3.4:6653"]),
    st.tuples(BR, st.sampled_from(["secure", "standalone"])).map(lambda t: ["set-fail-mode", *t]),
    st.tuples(BR).map(lambda t: ["br-set-external-id", t[0], "k", "v"]),
    st.tuples(_opt("--if-exists"), NAME, st.sampled_from(["type=internal", "options:k=v", "type=[]"])).map(
        lambda t: [*t[0], "set", "interface", t[1], t[2]]
    ),
    st.tuples(st.sampled_from(["--", "-- --oneline", "-- --dry-run"])).map(
        lambda t: ["@global", *t[0].split()[1:]]
    ),
)

# show and whole-table lists are compared after sorting, which needs them alone
ALONE = st.sampled_from(
    [
        ["show"],
        ["--columns=name,tag,trunks", "list", "port"],
        ["--columns=name,type", "list", "interface"],
        ["list", "bridge"],
    ]
)


def _chain(cmds: list[list[str]]) -> list[str]:
    # "@global" items become global options of the invocation (--oneline, --dry-run)
    glob = sorted({w for c in cmds if c[0] == "@global" for w in c[1:]})
    out: list[str] = []
    for c in (c for c in cmds if c[0] != "@global"):
        if out or c[0].startswith("-"):
            out.append("--")
        out.extend(c)
    return [*glob, *out] if out else ["list-br"]


INVOCATION = st.one_of(st.lists(CMD, min_size=1, max_size=3).map(_chain), ALONE)


@settings(
    max_examples=int(__import__("os").environ.get("OVS_HYP_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(INVOCATION, min_size=1, max_size=8))
def test_random_sequences(oracle, seq):
    assert compare(oracle, seq) == []
