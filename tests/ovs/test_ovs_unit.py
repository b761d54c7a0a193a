"""Unit tests of vmctl.ovs that need no Open vSwitch: parser, notation, the view, the commit check,
the records, the documented differences from ovs-vsctl (network.md §9) and performance."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from tests.ovs.oracle import VmctlState, run_vmctl
from vmctl.errors import OvsError
from vmctl.ovs import COMMANDS, Session, check
from vmctl.ovs.datum import (
    c_atoi,
    c_atoll,
    datum_str,
    json_quote,
    parse_datum,
    parse_token,
    string_needs_quotes,
    type_english,
)
from vmctl.ovs.schema import COLUMNS


def uuids(prefix: str = "0000"):
    c = itertools.count(1)
    return lambda: f"{prefix}{next(c):04x}-0000-4000-8000-000000000000"


def session(records=None, warn=None, **kw) -> Session:
    return Session(
        "11111111-2222-4333-8444-555555555555", records or {}, uuids(), warn or (lambda m: None), **kw
    )


def run(s: Session, *chain: str) -> list[str]:
    """Run `a b -- c d` style chains on one session; return outputs."""
    outs, cmd = [], []
    for w in [*chain, "--"]:
        if w == "--":
            if cmd:
                opts = {}
                while cmd[0].startswith("-"):
                    k, eq, v = cmd.pop(0).partition("=")
                    opts[k] = v if eq else None
                check(cmd[0], opts, cmd[1:])
                outs.append(s.run(cmd[0], opts, cmd[1:]))
            cmd = []
        else:
            cmd.append(w)
    return outs


def err(s: Session, *chain: str) -> str | None:
    with pytest.raises(OvsError) as e:
        run(s, *chain)
    return e.value.message


# ------------------------------------------------------------------ command table


def test_command_table():
    assert list(COMMANDS)[:3] == ["init", "show", "add-br"]
    assert list(COMMANDS)[-4:] == ["get", "set", "clear", "list"]
    assert len(COMMANDS) == 29
    assert COMMANDS["add-bond"].min_args == 4 and COMMANDS["add-bond"].max_args is None
    assert COMMANDS["list"].options == "--if-exists,--columns="
    assert COMMANDS["set-controller"].options == "--inactivity-probe="
    assert COMMANDS["list-br"].read_only and not COMMANDS["add-br"].read_only


# ------------------------------------------------------------------ check phase


@pytest.mark.parametrize(
    "name,opts,args,msg",
    [
        ("list", {}, ["x"], 'unknown table "x"'),
        ("list", {}, ["c"], '"c" matches multiple table names: CT_Timeout_Policy, CT_Zone, Controller'),
        ("get", {}, ["controller", "x"], "table Controller is not supported by vmctl"),
        ("list", {}, ["open"], "table Open_vSwitch is not supported by vmctl"),
        (
            "get",
            {},
            ["bridge", "b", "fl"],
            'Bridge contains more than one column whose name matches "fl": flood_vlans, flow_tables',
        ),
        ("get", {}, ["port", "p", "zz"], 'Port does not contain a column whose name matches "zz"'),
        ("get", {}, ["port", "p", ""], ": missing column name"),
        ("get", {}, ["port", "p", ":k"], ":k: missing column name"),
        ("get", {}, ["port", "p", 'a"b'], 'a"b: quoted string extends past end of argument'),
        ("set", {}, ["port", "p", "x\\"], "x\\: backslash at end of argument"),
        ("set", {}, ["port", "p", "zz=1"], 'Port does not contain a column whose name matches "zz"'),
        ("clear", {}, ["port", "p", "tag=1"], 'Port does not contain a column whose name matches "tag=1"'),
        (
            "list",
            {"--columns": "name,zz"},
            ["port"],
            'Port does not contain a column whose name matches "zz"',
        ),
    ],
)
def test_check_errors(name, opts, args, msg):
    with pytest.raises(OvsError) as e:
        check(name, opts, args)
    assert e.value.message == msg


def test_check_accepts():
    check("get", {}, ["Brid", "b", "_UUID", "-uuid", "NAME", "external-ids:x"])
    check("set", {}, ["port", "p", "tag=1", "trunks:x=5"])  # value errors are run-time ones
    check("list", {"--columns": ""}, ["port"])  # "must specify" is a run-time error
    check("list", {"--columns": "_uuid, nam"}, ["interface"])
    check("add-br", {}, [])  # no-op for the other commands


# ------------------------------------------------------------------ datum syntax


@pytest.mark.parametrize(
    "text,tok,end",
    [
        ("abc:def", "abc", 3),
        ('"a:b"=c', '"a:b"', 5),
        ("a\\:b", "a:b", 4),
        ('"a\\"b"', '"a\\"b"', 6),
        ("", "", 0),
        (" x", "", 0),
    ],
)
def test_tokens(text, tok, end):
    assert parse_token(text, 0) == (tok, end)


def test_atoi_like_c():
    assert c_atoi("4294967306") == 10
    assert c_atoi("abc") == 0
    assert c_atoi(" +12xyz") == 12
    assert c_atoi("-1") == -1
    assert c_atoi("99999999999999999999999") == -1  # strtol saturates, then (int) truncates
    assert c_atoll("99999999999999999999999") == 2**63 - 1
    assert c_atoll("\t-5ms") == -5


def test_notation():
    for s in ("", "0abc", "a b", "true", "false", "é", "12345678-1234-1234-1234-123456789ABC", "a/b"):
        assert string_needs_quotes(s), s
    for s in ("br0", "_a", "a.b-c", "Zz", "truex"):
        assert not string_needs_quotes(s), s
    assert json_quote('a"\\\b\t\n\f\r\x01\x7fé') == '"a\\"\\\\\\b\\t\\n\\f\\r\\u0001\x7fé"'
    t = COLUMNS["Port"]
    assert datum_str(t["tag"].type, ([], None)) == "[]"
    assert datum_str(t["tag"].type, ([5], None)) == "5"
    assert datum_str(t["trunks"].type, ([1, 2], None)) == "[1, 2]"
    assert datum_str(t["external_ids"].type, (["a", "b c"], ["1", "x"])) == '{a="1", "b c"=x}'
    assert datum_str(COLUMNS["Interface"]["type"].type, ([""], None)) == '""'


def test_type_english():
    p = COLUMNS["Port"]
    assert type_english(p["trunks"].type) == "set of up to 4096 integers"
    assert type_english(p["tag"].type) == "set of up to 1 integers"
    assert type_english(p["vlan_mode"].type) == "set of up to 1 strings"
    assert type_english(p["external_ids"].type) == "map of (string, string) pairs"
    assert type_english(COLUMNS["Interface"]["type"].type) == "string"


@pytest.mark.parametrize(
    "col,text,msg",
    [
        ("trunks", "", 'use "[]" to specify the empty set'),
        ("external_ids", "  ", 'use "{}" to specify the empty map'),
        ("trunks", ",", ',: unexpected "," parsing set of up to 4096 integers'),
        ("external_ids", "a", 'a: syntax error at "'),
        ("external_ids", "a b", 'a b: syntax error at "b" expecting "="'),
        ("external_ids", "{a=b", '{a=b: missing "}" at end of data'),
        ("trunks", "[1] 2", '[1] 2: trailing garbage after "]"'),
        ("tag", "[1,2]", "[1,2]: 2 value(s) specified but the maximum number is 1"),
        ("tag", "1-3", "1-3: 3 value(s) specified but the maximum number is 1"),
        ("trunks", "1,1", "1,1: set contains duplicate value"),
        ("external_ids", "a=1 a=2", "a=1 a=2: map contains duplicate key"),
        ("trunks", "0x10", '"0x10" is not a valid integer or range'),
        ("trunks", "1-2-3", '"1-2-3" is not a valid integer or range'),
        ("trunks", "5-3", '"5-3" is not a valid range. Range end cannot be before start.'),
        ("trunks", "4096", "constraint violation: 4096 is not in the valid range 0 to 4095 (inclusive)"),
        ("trunks", "4090-4100", "constraint violation: 4100 is not in the valid range 0 to 4095 (inclusive)"),
        (
            "vlan_mode",
            '"x y"',
            'constraint violation: "x y" is not one of the allowed values ([access, '
            "dot1q-tunnel, native-tagged, native-untagged, trunk])",
        ),
        ("external_ids", "a=", 'An empty string is not valid as input; use "" to represent the empty string'),
        ("external_ids", 'a="b', '"b: quoted string extends past end of argument'),
        ("external_ids", 'a="\\q"', '"\\q": bad escape \\q'),
    ],
)
def test_datum_errors(col, text, msg):
    with pytest.raises(OvsError) as e:
        parse_datum(COLUMNS["Port"][col].type, text)
    assert e.value.message == msg


def test_datum_values():
    p = COLUMNS["Port"]
    assert parse_datum(p["trunks"].type, " [ 3, 1-2 ,007 ]") == ([1, 2, 3, 7], None)
    assert parse_datum(p["tag"].type, "[]") == ([], None)
    assert parse_datum(p["external_ids"].type, '{b = "x y", a=1}') == (["a", "b"], ["1", "x y"])
    assert parse_datum(p["external_ids"].type, '"k\\u00e9"=v') == (["ké"], ["v"])


# ------------------------------------------------------------------ commands


def test_bridges_and_ports():
    s = session()
    assert run(s, "add-br", "br0", "--", "add-br", "br0.10", "br0", "10", "--", "list-br") == [
        "",
        "",
        "br0\nbr0.10\n",
    ]
    assert run(
        s,
        "add-port",
        "br0",
        "p1",
        "--",
        "add-port",
        "br0.10",
        "p2",
        "--",
        "list-ports",
        "br0",
        "--",
        "list-ports",
        "br0.10",
        "--",
        "port-to-br",
        "p2",
    )[2:] == ["p1\n", "p2\n", "br0.10\n"]
    assert run(s, "br-to-vlan", "br0.10", "--", "br-to-parent", "br0.10") == ["10\n", "br0\n"]
    assert err(s, "port-to-br", "br0") == "no port named br0"
    assert err(s, "iface-to-br", "br0.10") == "no interface named br0.10"
    assert (
        err(s, "add-port", "br0", "p2")
        == "cannot create a port named p2 because a port named p2 already exists on bridge br0.10"
    )
    with pytest.raises(OvsError) as e:
        run(s, "br-exists", "nope")
    assert e.value.message is None and e.value.exit_code == 2


def test_view_not_rebuilt_after_add_port():
    s = session()
    run(s, "add-br", "br0", "--", "add-br", "br0.10", "br0", "10")
    assert run(s, "add-port", "br0.10", "q1", "tag=99", "--", "port-to-br", "q1") == ["", "br0.10\n"]
    s.commit_check()
    s2 = session(s.records())
    assert run(s2, "port-to-br", "q1") == ["br0\n"]


def test_multiple_vlan_bridges_warning():
    warnings: list[str] = []
    s = session(warn=warnings.append)
    run(
        s,
        "add-br",
        "br0",
        "--",
        "add-br",
        "f1",
        "br0",
        "10",
        "--",
        "set",
        "port",
        "f1",
        "tag=20",
        "--",
        "add-br",
        "f2",
        "br0",
        "10",
        "--",
        "set",
        "port",
        "f1",
        "tag=10",
        "--",
        "list-br",
    )
    # f1's port has the smaller uuid, so it is the child and f2 the extra one
    assert warnings == [
        "vsctl|WARN|br0: bridge has multiple VLAN bridges (f2 and f1) for VLAN 10, but only one is allowed"
    ]


def test_may_exist_echo_quoting():
    s = session()
    run(s, "add-br", "br0", "--", "add-br", "br1", "--", "add-port", "br0", "p1")
    assert (
        err(s, "--may-exist", "--fake-iface", "add-bond", "a b", "p1", 'x"\\', "y")
        == r'"--may-exist --fake-iface add-bond "a b" p1 "x\"\\" y" but p1 is actually attached to bridge br0'
    )
    assert err(s, "--may-exist", "add-port", "br0", "p1", "tag=1", "--", "add-port", "br0", "p1") is not None
    assert (
        err(s, "--may-exist", "add-bond", "br0", "p1", "a", "b")
        == '"--may-exist add-bond br0 p1 a b" but p1 actually has interface(s) p1'
    )


def test_deferred_iface_edits_and_records():
    s = session()
    run(s, "add-br", "br0", "--", "add-bond", "br0", "bond0", "eth0", "eth1")
    run(s, "add-bond-iface", "bond0", "eth2", "--", "del-bond-iface", "bond0", "eth0")
    assert run(s, "list-ifaces", "br0") == ["eth1\neth2\n"]
    show = run(s, "show")[0]
    assert "eth2" not in show and "eth0" not in show  # unedited column; deleted row omitted (§9.2)
    s.commit_check()
    rec = s.records()
    assert sorted(i["name"] for i in rec["interface"]) == ["br0", "eth1", "eth2"]
    bond = next(p for p in rec["port"] if p["name"] == "bond0")
    assert sorted(bond["interfaces"]) == sorted(i["uuid"] for i in rec["interface"] if i["name"] != "br0")
    assert set(rec) == {"bridge", "port", "interface", "controller"}
    assert set(rec["bridge"][0]) == {
        "uuid",
        "name",
        "ports",
        "controller",
        "fail_mode",
        "datapath_type",
        "external_ids",
        "other_config",
    }
    assert set(bond) == {
        "uuid",
        "name",
        "interfaces",
        "tag",
        "trunks",
        "vlan_mode",
        "fake_bridge",
        "bond_fake_iface",
        "bond_mode",
        "lacp",
        "external_ids",
        "other_config",
    }


def test_commit_check_message():
    s = session()
    run(s, "add-br", "br0", "--", "add-bond", "br0", "b0", "a b", "a b")
    with pytest.raises(OvsError) as e:
        s.commit_check()
    assert e.value.message == (
        'transaction error: {"details":"Transaction causes multiple rows in \\"Interface\\" table to have '
        'identical values (\\"a b\\") for index on column \\"name\\".","error":"constraint violation"}'
    )


def test_row_lookup():
    s = session()
    run(s, "add-br", "br0", "--", "add-port", "br0", "p1")
    # uuids: iface br0 00000001, port br0 00000002, bridge 00000003, iface p1 00000004, port p1 00000005
    assert run(s, "get", "bridge", ".", "name") == ["br0\n"]
    assert err(s, "get", "port", ".", "name") == 'no row "." in table Port'
    assert run(s, "get", "port", "00000005", "name") == ["p1\n"]
    assert run(s, "get", "port", "00000005-0000-4000-8000-000000000000".upper(), "name") == ["p1\n"]
    assert err(s, "get", "port", "0000", "name") == (
        "Port contains 2 or more rows whose UUIDs begin with 0000: at least "
        "00000002-0000-4000-8000-000000000000 and 00000005-0000-4000-8000-000000000000"
    )
    assert err(s, "get", "port", "000", "name") == 'no row "000" in table Port'
    assert run(s, "--if-exists", "get", "port", "zz", "name") == [""]


def test_row_deleted_earlier_is_gone():  # network.md §9.2
    s = session()
    run(s, "add-br", "br0")
    u = run(s, "get", "bridge", "br0", "_uuid")[0].strip()
    assert (
        err(s, "del-br", "br0", "--", "set", "bridge", u, "fail_mode=secure")
        == f'no row "{u}" in table Bridge'
    )


def test_vmctl_read_only_columns():  # network.md §9.5
    s = session()
    run(s, "add-br", "br0", "--", "add-port", "br0", "p1")
    assert (
        err(s, "set", "port", "p1", "fake_bridge=true")
        == "column fake_bridge in table Port is read-only in vmctl"
    )
    assert err(s, "set", "bridge", "br0", "ports=[]") == "column ports in table Bridge is read-only in vmctl"
    assert err(s, "clear", "interface", "p1", "mtu") == "column mtu in table Interface is read-only in vmctl"
    assert err(s, "clear", "interface", "p1", "type") == (
        '"clear" operation cannot be applied to column type of table Interface, which is not allowed to be empty'
    )
    # a row inserted by this transaction has a writable name in ovs-vsctl; vmctl refuses it
    assert err(s, "set", "port", "p1", "name=x") == "column name in table Port is read-only in vmctl"
    s = session(s.records())
    assert err(s, "set", "port", "p1", "name=x") == "cannot modify read-only column name in table Port"
    assert err(s, "clear", "port", "p1", "name") == "cannot modify read-only column name in table Port"
    assert err(s, "add-port", "br0", "p2", "name=x") == "column name in table Port is read-only in vmctl"
    assert err(s, "set", "port", "p1", "tag:x=1") == "cannot specify key to set for non-map column tag"


def test_controllers_and_warnings():
    warnings: list[str] = []
    s = session(warn=warnings.append)
    run(
        s,
        "add-br",
        "br0",
        "--",
        "--inactivity-probe=5s",
        "set-controller",
        "br0",
        "tcp:1.2.3.4:6653",
        "udp:x",
    )
    assert warnings == ['vsctl|WARN|target type "udp:x" is possibly erroneous']
    assert run(s, "get-controller", "br0") == ["tcp:1.2.3.4:6653\nudp:x\n"]
    s.commit_check()
    rec = s.records()
    assert sorted(c["inactivity_probe"] for c in rec["controller"]) == [5, 5]
    run(s, "del-controller", "br0")
    assert s.records()["controller"] == []


def test_list_tables_and_oneline():
    s = session(no_headings=True)
    run(s, "add-br", "br0")
    assert s.run("list", {"--columns": "name"}, ["bridge"], oneline=True) == "br0\n"
    assert s.run("list", {"--columns": "name"}, ["bridge"]) == "\nbr0\n"
    assert s.run("list-br", {}, [], oneline=True) == "br0\n"
    assert s.run("init", {}, [], oneline=True) == "\n"
    assert s.run("show", {}, [], oneline=True).count("\n") == 1
    b = session(bare=True)
    run(b, "add-br", "br0")
    assert (
        b.run("list", {"--columns": "name,external_ids,ports"}, ["bridge"])
        == "br0\n\n00000002-0000-4000-8000-000000000000\n"
    )


def test_changed():
    s = session()
    assert not s.changed
    run(s, "add-br", "x", "--", "del-br", "x")
    assert not s.changed
    run(s, "add-br", "br0")
    assert s.changed
    s2 = session(s.records())
    run(s2, "list-br", "--", "show", "--", "get", "bridge", "br0", "name")
    assert not s2.changed


def test_xe_helpers():
    s = session()
    s.add_bridge("xenbr0", external_ids={"xs-network-uuids": "n1"})
    s.add_port("xenbr0", "eth0")
    s.add_port("xenbr0", "vif1.0", iface_external_ids={"attached-mac": "aa"}, tag=5)
    assert s.has_bridge("xenbr0") and not s.has_bridge("nope")
    assert s.port_bridge("vif1.0") == "xenbr0" and s.port_bridge("xenbr0") is None
    with pytest.raises(OvsError):
        s.add_port("xenbr0", "eth0")
    s.del_port("eth0")
    s.del_port("eth0")  # like --if-exists
    assert run(s, "list-ports", "xenbr0") == ["vif1.0\n"]
    s.del_bridge("xenbr0")
    assert run(s, "list-br") == [""]


def test_driver_chain_errors():
    st = VmctlState()
    assert run_vmctl(["add-br", "b", "--", "add-br", "b", "--", "list", "x"], st) == (
        1,
        "",
        'vmctl: unknown table "x"\n',
    )
    assert run_vmctl(["list-br"], st) == (0, "", "")


# ------------------------------------------------------------------ performance and imports


def test_ten_thousand_ports_in_one_transaction():
    # add-br discards the view; interleaving it with add-port must stay correct at this size (its
    # speed is measured by bench/suites/ovs.py, not asserted here)
    s = Session("h", {}, uuids("00"), lambda m: None)
    for b in range(100):
        s.run("add-br", {}, [f"br{b}"])
        s.run("add-br", {}, [f"br{b}.5", f"br{b}", "5"])
        for i in range(100):
            s.run("add-port", {}, [f"br{b}" if i % 2 else f"br{b}.5", f"p{b}-{i}"])
        s.run("set", {}, ["port", f"p{b}-1", "external_ids:a=b"])
    assert s.run("list-ports", {}, ["br7.5"]).count("\n") == 50
    s.commit_check()
    rec = s.records()
    assert s.changed
    assert len(rec["port"]) == 10200


def test_imports_only_stdlib():
    code = (
        "import sys; before = set(sys.modules); import vmctl.ovs; "
        "new = set(sys.modules) - before; "
        "bad = sorted(m for m in new if m.split('.')[0] not in sys.stdlib_module_names "
        "and not (m in ('vmctl', 'vmctl.errors') or m.startswith('vmctl.ovs'))); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_list_style_given_to_run():
    s = session()
    run(s, "add-br", "br0")
    assert s.run("list", {"--columns": "name,external_ids"}, ["bridge"], no_headings=True) == "br0\n{}\n"
    assert s.run("list", {"--columns": "name,external_ids"}, ["bridge"], bare=True) == "\nbr0\n\n"
    assert (
        s.run("list", {"--columns": "name"}, ["bridge"], bare=False, no_headings=False)
        == "\nname                : br0\n"
    )
