"""Input the command line and the batch loader must read faithfully or refuse clearly: YAML
values keep their source text, deep nesting and a damaged schema version are plain errors,
`--yes` and `--NAME` among an xe-style command's arguments, and usage errors in the
`vmctl: CODE: message` form (ovs-vsctl's own form kept for ovs-style commands)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from vmctl.errors import MESSAGES


# --- 1. YAML batches keep every value's source text -------------------------------------------------
def test_batch_values_keep_their_source_text(small):
    batch = (
        "- {command: vm-create, name-label: 0x1F, name-description: '12:30:00'}\n"
        "- {command: vm-create, name-label: 012, name-description: yes}\n"
        "- {command: vm-create, name-label: 12:30:00, name-description: 1.50}\n"
        "- {command: vm-create, name-label: yes, name-description: ~}\n"
        "- {command: vm-create, name-label: 12:34:56:12:34:56, name-description: 1e3}\n"
        "- {command: vm-create, name-label: quoted, name-description: '0x1F'}\n"
        "- {command: vm-create, name-label: tagged, name-description: !!int 012}\n"
    )
    small.ok("batch", "-", input=batch)
    rows = json.loads(small.ok("vm-list", "params=name-label,name-description", "-f", "json"))
    got = {r["name-label"]: r["name-description"] for r in rows}
    assert got == {
        "0x1F": "12:30:00",
        "012": "yes",
        "12:30:00": "1.50",
        "yes": "~",
        "12:34:56:12:34:56": "1e3",
        "quoted": "0x1F",
        "tagged": "10",  # an explicit tag means what it says
        "db1": "",
        "web1": "",
    }


def test_batch_bool_values_still_read_as_bools(small):
    small.ok(
        "batch", "-", input="- {command: vm-group-create, name-label: g, placement: affinity, strict: yes}\n"
    )
    assert small.ok("vm-group-list", "params=strict", "--minimal") == "true\n"


# --- 2. no INTERNAL_ERROR for deep nesting or a damaged schema version --------------------------------
def test_deeply_nested_batch_is_a_clear_invalid_value(small):
    for text in ("- " * 900 + "x\n", "[" * 900 + "]" * 900 + "\n"):
        r = small.fail("batch", "-", input=text, code="INVALID_VALUE")
        assert "nested more than 64 levels deep" in r.err
    r = small.fail("-f", "json", "batch", "-", input="- " * 900 + "x\n")
    assert json.loads(r.err)["error"]["code"] == "INVALID_VALUE"


def test_schema_version_that_is_not_a_number(small):
    conn = sqlite3.connect(small.db)
    conn.execute("UPDATE meta SET value = 'abc' WHERE key = 'schema-version'")
    conn.commit()
    conn.close()
    for words in (["vm-list"], ["vm-create", "name-label=x"], ["list-br"], ["--dry-run", "vm-list"]):
        r = small.fail(*words, code="DATABASE_ERROR")
        assert "schema version is not a number" in r.err and "schema-version: abc" in r.err
    err = json.loads(small.fail("-f", "json", "vm-list").err)["error"]
    assert err["code"] == "DATABASE_ERROR" and err["params"]["schema-version"] == "abc"


# --- 3. flags among an xe-style command's arguments ---------------------------------------------------
@pytest.mark.slow  # many runs of the real executable; the fast tier keeps the quick cases
def test_yes_among_the_arguments_confirms(small):
    small.fail("vm-uninstall", "vm=web1", code="CONFIRMATION_REQUIRED")
    small.ok("vm-uninstall", "vm=web1", "--yes")
    small.fail("pool-eject", "host=h2", code="CONFIRMATION_REQUIRED")
    small.ok("pool-eject", "host=h2", "--yes")
    small.ok("host-declare-dead", "uuid=h2")  # Host.destroy takes only a host that is not live
    small.fail("host-forget", "host=h2", code="CONFIRMATION_REQUIRED")
    small.ok("host-forget", "host=h2", "--yes")
    assert small.ok("host-list", "params=name-label", "--minimal") == "h1\n"


def test_flag_form_of_a_bool_argument(small):
    small.ok("vm-group-create", "name-label=g1", "placement=affinity", "--strict")
    small.ok("vm-group-create", "name-label=g2", "placement=affinity", "--strict=false")
    small.ok("vm-group-create", "name-label=g3", "placement=affinity", "--strict=true")
    rows = json.loads(small.ok("vm-group-list", "params=name-label,strict", "-f", "json"))
    assert {r["name-label"]: r["strict"] for r in rows} == {"g1": True, "g2": False, "g3": True}
    small.fail(
        "vm-group-create", "name-label=g4", "placement=affinity", "--strict=maybe", code="INVALID_VALUE"
    )
    small.fail("vm-group-create", "name-label=g4", "placement=affinity", "--strikt", code="UNKNOWN_PARAMETER")


# --- 4. usage errors in the xe form, with -f json; ovs-vsctl's form for ovs-style commands ------------
def test_unknown_command_suggests_the_closest(small):
    r = small.fail("vm-craete", code="UNKNOWN_COMMAND")
    assert r.err.splitlines()[0] == (
        "vmctl: UNKNOWN_COMMAND: There is no command 'vm-craete'; did you mean vm-create? "
        "(vmctl --help lists every command)"
    )
    assert "  name: vm-craete" in r.err
    err = json.loads(small.fail("-f", "json", "vm-craete").err)["error"]
    assert err["code"] == "UNKNOWN_COMMAND" and err["params"]["did-you-mean"] == "vm-create"
    small.fail("help", "vm-craete", code="UNKNOWN_COMMAND")
    r = small.fail("frobnicate", code="UNKNOWN_COMMAND")
    assert "did you mean" not in r.err


@pytest.mark.slow  # one of the longest: the fast tier stays under 3 minutes
def test_usage_errors_have_a_code_and_honour_json(small):
    r = small.fail("--frob", "vm-list", code="USAGE")
    assert "Unrecognized option '--frob'" in r.err and "  option: --frob" in r.err
    r = small.fail("-t", "0", "vm-list", code="USAGE")
    assert "whole number of seconds" in r.err
    r = small.fail("batch", code="USAGE")
    assert "following arguments are required: file" in r.err and "  command: batch" in r.err
    r = small.fail("vm-list", "\udcff", code="INVALID_VALUE")  # the byte 0xff, not UTF-8
    assert "Argument 2 is not valid UTF-8" in r.err and "value: \\xff" in r.err
    for words in (
        ["-f", "json", "--frob", "vm-list"],
        ["-f", "json", "-t", "0", "vm-list"],
        ["-f", "json", "batch"],
        ["-f", "json", "vm-list", "\udcff"],
        ["-f", "json", "--frob"],
    ):
        err = json.loads(small.fail(*words).err)["error"]
        assert err["code"] in ("USAGE", "INVALID_VALUE") and err["message"][0].isupper(), words


def test_ovs_style_usage_errors_keep_ovs_vsctl_form(small):
    assert small.fail("--frob").err == "vmctl: unrecognized option '--frob'\n"
    assert small.fail("-t", "0", "list-br").err == "vmctl: value 0 on -t or --timeout is invalid\n"
    assert small.fail("add-br").err == "vmctl: 'add-br' command requires at least 1 arguments\n"
    assert small.fail("add-br", "\udcff").err == "vmctl: argument is not valid UTF-8\n"


def test_batch_item_usage_errors_in_continue_mode(small):
    r = small.run("-f", "json", "batch", "-", "--continue-on-error", input="- vm-craete\n- add-br\n")
    assert r.rc == 1
    codes = [x["error"]["code"] for x in json.loads(r.out)]
    assert codes == ["UNKNOWN_COMMAND", "USAGE"]


def test_every_error_code_has_a_sentence():
    """No message falls back to the code in lower case ("Vm group rule violated")."""
    root = Path(__file__).resolve().parent.parent / "vmctl"
    not_codes = {"VMCTL_DB", "VMCTL_DEBUG", "VMCTL_FORMAT", "VMCTL_HOST", "VMCTL_TIMEOUT", "XDG_DATA_HOME"}
    not_codes.add("MODE_RESTART")  # a placement mode, not an error
    not_codes |= {"XDG_RUNTIME_DIR", "SUDO_USER", "SUDO_UID", "SUDO_GID"}  # the lab's environment
    not_codes |= {"VMCTL_DAEMON", "VMCTL_DAEMON_IDLE", "VMCTL_DAEMON_LOG"}  # the manager's settings
    not_codes |= {
        "LD_LIBRARY_PATH",
        "LD_PRELOAD",
        "SSH_AUTH_SOCK",
        "XDG_CONFIG_HOME",
    }  # what a manager's clients must share
    codes = set()
    for path in root.rglob("*.py"):
        codes.update(re.findall(r"[\"']([A-Z][A-Z0-9]+(?:_[A-Z0-9]+)+)[\"']", path.read_text()))
    missing = sorted(codes - not_codes - set(MESSAGES))
    assert not missing, missing
    for code, message in MESSAGES.items():
        assert message != code.replace("_", " ").capitalize() and message[0].isupper(), code
