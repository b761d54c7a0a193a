"""vmctl's own command-line layer (getopt-style global options, `--` segments, command options,
argument counts, the read-only fast path) against the real ovs-vsctl, through the whole CLI.
Excluded on purpose (network.md §9): -v/--verbose and --log-file have no effect in vmctl, -f is
vmctl's output format, and abbreviations whose expansion differs because vmctl has more options."""

from __future__ import annotations

import pytest

from tests.ovs.oracle import Canon, VmctlState, run_vmctl_cli

SEQUENCE = [
    ["--foo"],
    ["--foo=bar", "list-br"],
    ["--db"],
    ["--oneline=1", "list-br"],
    ["-x"],
    ["-t"],
    ["-t", "0", "list-br"],
    ["-t", "abc", "list-br"],
    ["--timeout=5", "list-br"],
    ["--may-exist", "--may-exist", "add-br", "b"],
    ["--may-exist", "--", "add-br", "b2"],
    ["--may-exist", "--", "--", "add-br", "b3"],
    ["--", "--", "list-br"],
    ["--"],
    [],
    ["--may-exist"],
    ["--", "--may-exist"],
    ["add-br", "x", "--", "--", "list-br"],
    ["--may-exist", "add-br", "b", "--", "--may-exist", "--may-exist", "add-br", "c"],
    ["--if-exists", "add-br", "q"],
    ["--fake", "list-br"],
    ["-fake", "list-br"],
    ["--real=1", "list-br"],
    ["--columns", "list", "bridge"],
    ["--columns=", "list", "bridge"],
    ["list-br", "extra"],
    ["list-br", "-x"],
    ["add-br"],
    ["br-exists", "nope"],
    ["--oneline", "list-br", "--", "br-exists", "b"],
    ["--dry-run", "add-br", "z", "--", "list-br"],
    ["--no-wait", "--retry", "list-br"],
    ["--no-syslog", "list-br"],
    ["--if-exists", "--", "del-br", "nope"],
    ["del-br", "nope", "--", "list-br"],
    ["-t5", "list-br"],
    ["--timeout", "7", "--oneline", "list-br", "--", "list-br"],
    ["--bare", "--columns=name", "list", "bridge"],
    ["--no-headings", "list", "bridge", "b"],
    ["--with-iface", "del-port", "nope"],
]
# vmctl's own -f (output format) is not ovs-vsctl's table option (network.md §9.9)
VMCTL_OWN = {("-fake", "list-br")}


@pytest.mark.ovs
def test_command_line_layer_matches_ovs_vsctl(oracle, monkeypatch):
    monkeypatch.delenv("VMCTL_HOST", raising=False)
    oracle.reset()
    state, ca, cb = VmctlState(), Canon(), Canon()
    diffs = []
    for argv in SEQUENCE:
        want = ca(argv, *oracle.run(argv))
        have = cb(argv, *run_vmctl_cli(argv, state))
        if tuple(argv) in VMCTL_OWN:
            assert have[0] == want[0] == 1 and have[1] == want[1] == ""
        elif tuple(want) != tuple(have):
            diffs.append(f"{argv}\n  ovs-vsctl: {want}\n  vmctl:     {have}")
    assert not diffs, "\n".join(diffs)
