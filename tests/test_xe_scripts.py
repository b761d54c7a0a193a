"""xe command lines as people's scripts write them run as written (README "xe scripts"): one
contract test per form, through the real executable. The names themselves are checked
exhaustively against xen-api's tables in tests/test_xe_names.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import Inventory, cli

CHAIN = [
    ["pool-create", "name-label=p1"],
    ["host-add", "name-label=h1", "address=10.0.0.1", "cpu-count=8", "memory-total=64GiB", "pool=p1"],
    ["host-add", "name-label=h2", "address=10.0.0.2", "cpu-count=8", "memory-total=64GiB", "pool=p1"],
    ["sr-create", "name-label=nfs", "type=nfs", "physical-size=1TiB"],
    ["sr-create", "name-label=nfs2", "type=nfs", "physical-size=1TiB"],
    ["vm-create", "name-label=web1", "memory=1GiB", "vcpus=2"],
    ["vm-disk-add", "vm=web1", "disk-size=1GiB", "sr-uuid=nfs"],
    ["vm-create", "name-label=db1", "memory=2GiB"],
    ["vm-disk-add", "vm=db1", "disk-size=1GiB", "sr-uuid=nfs"],
    ["vm-create", "name-label=tpl"],
    ["vm-disk-add", "vm=tpl", "disk-size=1GiB", "sr-uuid=nfs"],
    ["vm-param-set", "uuid=tpl", "is-a-template=true"],
    ["vm-snapshot", "vm=db1", "new-name-label=snap1"],
    ["pool-param-set", "uuid=p1", "default-sr=nfs"],
    ["host-add", "name-label=h3", "address=10.0.0.3", "cpu-count=8", "memory-total=64GiB"],
]


@pytest.fixture(scope="module")
def xe_template(tmp_path_factory) -> Path:
    """Pool p1 (h1, h2), shared SRs nfs and nfs2 (default-SR nfs), web1 running on h1 with a disk
    and a VIF, halted db1 with a disk and a snapshot snap1, template tpl; standalone host h3."""
    db = tmp_path_factory.mktemp("xe") / "inv.db"
    words: list[str] = []
    for c in CHAIN:
        words += [*c, "--"]
    assert cli(db, *words[:-1]).returncode == 0
    net = cli(db, "network-list", "bridge=xenbr0", "pool=p1", "--minimal").stdout.strip()
    r = cli(
        db,
        "vif-create",
        "vm-uuid=web1",
        f"network-uuid={net}",
        "device=0",
        "--",
        "vm-start",
        "vm=web1",
        "on=h1",
    )
    assert r.returncode == 0, r.stderr
    return db


class Xe(Inventory):
    """The command under test runs through the real executable (ok, fail, run); the reads that
    set up or check it run in-process (q), which is fast."""

    def q(self, *args: str) -> str:
        r = cli(self.db, *args)
        assert r.returncode == 0, (args, r.stderr)
        return r.stdout


@pytest.fixture
def xe(tmp_path, xe_template) -> Xe:
    inv = Xe(tmp_path / "inv.db")
    shutil.copy(xe_template, inv.db)
    return inv


def uuid(inv: Xe, cls: str, name: str) -> str:
    return inv.q(
        f"{cls}-list", f"name-label={name}", *(["--all"] if cls == "vm" else []), "--minimal"
    ).strip()


def minimal(out: str) -> set[str]:
    return set(out.strip().split(",")) - {""}


# --- 1. reference fields named <class>-uuid, and <ref>-name-label ---------------------------------------------
def test_vbd_list_vm_uuid(xe):
    web1 = uuid(xe, "vm", "web1")
    got = minimal(xe.ok("vbd-list", f"vm-uuid={web1}", "--minimal"))
    assert len(got) == 1 and got == minimal(xe.q("vbd-list", f"vm={web1}", "--minimal"))


def test_vdi_list_sr_uuid(xe):
    got = minimal(xe.ok("vdi-list", f"sr-uuid={uuid(xe, 'sr', 'nfs')}", "--minimal"))
    assert got and got == minimal(xe.q("vdi-list", "sr=nfs", "--minimal"))
    assert not minimal(xe.q("vdi-list", f"sr-uuid={uuid(xe, 'sr', 'nfs2')}", "--minimal"))


def test_pbd_list_sr_uuid(xe):
    got = minimal(xe.ok("pbd-list", f"sr-uuid={uuid(xe, 'sr', 'nfs')}", "--minimal"))
    assert len(got) == 2 and got == minimal(xe.q("pbd-list", "sr=nfs", "--minimal"))  # one per host of p1


def test_vbd_param_get_vdi_uuid(xe):
    vbd = xe.q("vbd-list", "vm=web1", "--minimal").strip()
    got = xe.ok("vbd-param-get", f"uuid={vbd}", "param-name=vdi-uuid")
    assert got == xe.q("vbd-param-get", f"uuid={vbd}", "param-name=vdi") and len(got.strip()) == 36


def test_params_vm_uuid(xe):
    rows = json.loads(
        xe.ok("vbd-list", "vdi-name-label=web1 0", "params=vm-uuid,vm-name-label", "-f", "json")
    )
    assert rows == [{"vm-uuid": uuid(xe, "vm", "web1"), "vm-name-label": "web1"}]


def test_host_name_label_filter(xe):
    got = minimal(xe.ok("pbd-list", "host-name-label=h1", "--minimal"))
    assert len(got) == 2 and got == minimal(xe.q("pbd-list", "host=h1", "--minimal"))  # nfs and nfs2


def test_sr_name_label_filter(xe):
    got = minimal(xe.ok("pbd-list", "sr-name-label=nfs2", "--minimal"))
    assert len(got) == 2 and got == minimal(xe.q("pbd-list", "sr=nfs2", "--minimal"))


# --- 2. differently spelled fields ----------------------------------------------------------------------------
SPELLINGS = [
    ("vm", "web1", "VCPUs-max", "vcpus", "2"),
    ("vm", "web1", "VCPUs-at-startup", "vcpus", "2"),
    ("vm", "web1", "dom-id", "domid", "1"),
    ("pool", "p1", "default-SR", "default-sr", None),
    ("sr", "nfs", "PBDs", "pbds", None),
    ("vm", "db1", "suspend-VDI-uuid", "suspend-vdi", ""),
]


@pytest.mark.parametrize("cls,name,xe_name,ours,value", SPELLINGS, ids=[s[2] for s in SPELLINGS])
def test_xe_field_spellings(xe, cls, name, xe_name, ours, value):
    u = uuid(xe, cls, name)
    got = xe.ok(f"{cls}-param-get", f"uuid={u}", f"param-name={xe_name}")
    assert got == xe.q(f"{cls}-param-get", f"uuid={u}", f"param-name={ours}")
    if value is not None:
        assert got.strip() == value
    else:
        assert got.strip()  # default-SR and PBDs are set in this inventory


def test_network_pif_uuids(xe):
    net = xe.q("network-list", "bridge=xenbr0", "pool=p1", "--minimal").strip()
    pifs = xe.ok("network-param-get", f"uuid={net}", "param-name=PIF-uuids").strip()
    assert (
        pifs == xe.q("network-param-get", f"uuid={net}", "param-name=pifs").strip()
        and len(pifs.split("; ")) == 2
    )


def test_pif_ip_configuration_mode(xe):
    rows = json.loads(
        xe.ok("pif-list", "IP-configuration-mode=static", "params=IP,IP-configuration-mode", "-f", "json")
    )
    assert sorted(r["IP"] for r in rows) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert {r["IP-configuration-mode"] for r in rows} == {"Static"}  # as xe prints it


def test_vbd_userdevice(xe):
    assert xe.ok("vbd-list", "vm=web1", "userdevice=0", "params=userdevice", "--minimal") == "0\n"


def test_vm_param_set_with_xe_names(xe):
    xe.ok("vm-param-set", "uuid=db1", "VCPUs-max=4", "VCPUs-at-startup=4")
    assert xe.q("vm-param-get", "uuid=db1", "param-name=vcpus").strip() == "4"


def test_vm_create_with_xe_names(xe):
    u = xe.ok("vm-create", "name-label=x", "pool=p1", "VCPUs-max=3").strip()
    assert xe.q("vm-param-get", f"uuid={u}", "param-name=vcpus").strip() == "3"


# --- 3. flags in key=value form, --live ---------------------------------------------------------------------
def test_force_true(xe):
    xe.ok("vm-shutdown", "vm=web1", "force=true")
    assert xe.q("vm-param-get", "uuid=web1", "param-name=power-state").strip() == "halted"


def test_force_false_is_no_force(xe):
    xe.q("vm-pause", "vm=web1")
    xe.fail(
        "vm-shutdown", "vm=web1", "force=false", code="VM_BAD_POWER_STATE"
    )  # a clean shutdown of a paused VM


def test_paused_true(xe):
    xe.ok("vm-start", "vm=db1", "paused=true")
    assert xe.q("vm-param-get", "uuid=db1", "param-name=power-state").strip() == "paused"


def test_minimal_true(xe):
    out = xe.ok("vm-list", "minimal=true")
    assert out == xe.q("vm-list", "--minimal") and len(minimal(out)) == 2  # web1, db1: not a field filter


@pytest.mark.parametrize(
    "words",
    [
        ["vm-migrate", "vm=web1", "--live", "host=h2"],
        ["vm-migrate", "vm=web1", "live=true", "host=h2"],
        ["--live", "vm-migrate", "vm=web1", "host=h2"],
        ["--", "--live", "vm-migrate", "vm=web1", "host=h2"],
    ],
    ids=["after", "key=value", "global", "command-option"],
)
def test_live(xe, words):
    xe.ok(*words)
    assert xe.q("vm-param-get", "uuid=web1", "param-name=resident-on").strip() == uuid(xe, "host", "h2")


# --- 4. selectors -----------------------------------------------------------------------------------------
def test_vm_migrate_host_uuid(xe):
    h2 = uuid(xe, "host", "h2")
    xe.ok("vm-migrate", "vm=web1", f"host-uuid={h2}")
    assert xe.q("vm-param-get", "uuid=web1", "param-name=resident-on").strip() == h2


def test_sr_create_host_uuid(xe):
    h2 = uuid(xe, "host", "h2")
    u = xe.ok("sr-create", "name-label=local", "type=ext", "physical-size=10GiB", f"host-uuid={h2}").strip()
    assert xe.q("sr-param-get", f"uuid={u}", "param-name=host").strip() == h2


def test_pool_designate_new_master_host_uuid(xe):
    h2 = uuid(xe, "host", "h2")
    xe.ok("pool-designate-new-master", f"host-uuid={h2}")
    assert xe.q("pool-param-get", "uuid=p1", "param-name=master").strip() == h2


def test_pool_eject_host_uuid(xe):
    h2 = uuid(xe, "host", "h2")
    xe.ok("pool-eject", f"host-uuid={h2}", "--force")
    assert xe.q("host-param-get", f"uuid={h2}", "param-name=pool") != xe.q(
        "pool-list", "name-label=p1", "--minimal"
    )


@pytest.mark.parametrize("command", ["host-disable", "host-enable"])
def test_uuid_on_host_enable_disable(xe, command):
    h2 = uuid(xe, "host", "h2")
    xe.ok(command, f"uuid={h2}")
    assert (
        xe.q("host-param-get", f"uuid={h2}", "param-name=enabled").strip()
        == str(command == "host-enable").lower()
    )


def test_uuid_on_host_get_vms_which_prevent_evacuation(xe):
    assert xe.ok("host-get-vms-which-prevent-evacuation", f"uuid={uuid(xe, 'host', 'h1')}") == ""


def test_uuid_on_host_evacuate(xe):
    xe.ok("host-evacuate", f"uuid={uuid(xe, 'host', 'h1')}")
    assert xe.q("vm-param-get", "uuid=web1", "param-name=resident-on").strip() == uuid(xe, "host", "h2")


def test_uuid_on_host_forget(xe):
    h2 = uuid(xe, "host", "h2")
    xe.q("host-declare-dead", f"uuid={h2}")  # Host.destroy takes only a host that is not live
    xe.ok("host-forget", f"uuid={h2}", "--force")
    assert xe.q("host-list", "name-label=h2", "--minimal").strip() == ""


def test_uuid_names_the_vm_of_vm_vif_list(xe):
    assert len(minimal(xe.ok("vm-vif-list", f"uuid={uuid(xe, 'vm', 'web1')}", "--minimal"))) == 1


@pytest.mark.parametrize(
    "words",
    [
        ["vm-memory-set", "memory=4GiB"],
        ["vm-memory-static-range-set", "min=1GiB", "max=4GiB"],
        ["vm-memory-dynamic-range-set", "min=2GiB", "max=2GiB"],
        [
            "vm-memory-limits-set",
            "static-min=1GiB",
            "dynamic-min=2GiB",
            "dynamic-max=2GiB",
            "static-max=4GiB",
        ],
        ["vm-disk-add", "disk-size=1GiB", "device=1"],
        ["vm-disk-remove", "device=0"],
        ["vm-clone", "new-name-label=c1"],
        ["vm-copy", "new-name-label=c2", "sr-uuid=nfs2"],
    ],
    ids=lambda w: w[0],
)
def test_uuid_names_the_vm(xe, words):
    xe.ok(words[0], f"uuid={uuid(xe, 'vm', 'db1')}", *words[1:])


def test_vm_install_template_uuid(xe):
    new = xe.ok(
        "vm-install", f"template-uuid={uuid(xe, 'vm', 'tpl')}", "new-name-label=fromtpl", "sr-name-label=nfs2"
    )
    disk = xe.q("vbd-list", f"vm={new.strip()}", "params=vdi", "--minimal").strip()
    assert xe.q("vdi-param-get", f"uuid={disk}", "param-name=sr-name-label").strip() == "nfs2"


def test_snapshot_uuid(xe):
    snap = uuid(xe, "vm", "snap1")
    xe.ok("snapshot-uninstall", f"snapshot-uuid={snap}", "force=true")
    assert xe.q("snapshot-list", "--minimal").strip() == ""


# --- 5. thin variants of existing commands ----------------------------------------------------------------------
def test_template_list(xe):
    assert xe.ok("template-list", "name-label=tpl", "params=VCPUs-max", "--minimal") == "1\n"


def test_template_param_set(xe):
    tpl = uuid(xe, "vm", "tpl")
    xe.ok("template-param-set", f"uuid={tpl}", "name-description=base", "VCPUs-max=2")
    assert xe.q("vm-param-get", f"uuid={tpl}", "param-name=name-description") == "base\n"
    assert xe.q("vm-param-get", f"uuid={tpl}", "param-name=vcpus") == "2\n"


def test_template_param_get(xe):
    assert xe.ok("template-param-get", f"uuid={uuid(xe, 'vm', 'tpl')}", "param-name=name-label") == "tpl\n"


def test_template_param_list(xe):
    out = xe.ok("template-param-list", f"uuid={uuid(xe, 'vm', 'tpl')}", "params=VCPUs-max,name-label")
    assert out == " VCPUs-max ( RW): 1\nname-label ( RW): tpl\n"


def test_template_param_commands_take_templates_only(xe):
    xe.fail(
        "template-param-get", f"uuid={uuid(xe, 'vm', 'web1')}", "param-name=uuid", code="VM_IS_NOT_A_TEMPLATE"
    )


def test_template_uninstall(xe):
    tpl = uuid(xe, "vm", "tpl")
    disk = xe.q("vbd-list", f"vm={tpl}", "params=vdi", "--minimal").strip()
    xe.ok("template-uninstall", f"template-uuid={tpl}", "--force")
    assert xe.q("vm-list", "--all", f"uuid={tpl}", "--minimal").strip() == ""
    assert xe.q("vdi-list", f"uuid={disk}", "--minimal").strip() == ""  # its owned disk went too


def test_template_uninstall_takes_templates_only(xe):
    xe.fail("template-uninstall", f"template-uuid={uuid(xe, 'vm', 'web1')}", code="VM_IS_NOT_A_TEMPLATE")


def test_snapshot_clone(xe):
    u = xe.ok("snapshot-clone", f"uuid={uuid(xe, 'vm', 'snap1')}", "new-name-label=fromsnap").strip()
    assert xe.q("template-param-get", f"uuid={u}", "param-name=is-a-template").strip() == "true"


def test_snapshot_copy(xe):
    u = xe.ok(
        "snapshot-copy", f"snapshot-uuid={uuid(xe, 'vm', 'snap1')}", "new-name-label=c", "sr-uuid=nfs2"
    ).strip()
    disk = xe.q("vbd-list", f"vm={u}", "params=vdi", "--minimal").strip()
    assert xe.q("vdi-param-get", f"uuid={disk}", "param-name=sr-name-label").strip() == "nfs2"


def test_vdi_pool_migrate(xe):
    vdi = xe.q("vbd-list", "vm=web1", "params=vdi", "--minimal").strip()
    moved = xe.ok("vdi-pool-migrate", f"uuid={vdi}", "sr-uuid=nfs2").strip()
    assert xe.q("vbd-list", "vm=web1", "params=vdi", "--minimal").strip() == moved
    assert xe.q("vdi-param-get", f"uuid={moved}", "param-name=sr-name-label").strip() == "nfs2"
    assert xe.q("vm-param-get", "uuid=web1", "param-name=power-state").strip() == "running"


def test_vdi_pool_migrate_needs_a_vm(xe):
    lone = xe.q("vdi-create", "sr-uuid=nfs", "name-label=lone", "virtual-size=1GiB").strip()
    xe.fail("vdi-pool-migrate", f"uuid={lone}", "sr-uuid=nfs2", code="VDI_NEEDS_VM_FOR_MIGRATE")


# --- 6. enum values in any case, printed as xe prints them ------------------------------------------------------
def test_vbd_list_params_type_prints_disk(xe):
    assert xe.ok("vbd-list", "vm=web1", "params=type", "--minimal") == "Disk\n"


@pytest.mark.parametrize("value", ["Disk", "disk", "DISK"])
def test_vbd_list_type_filter_any_case(xe, value):
    assert xe.ok("vbd-list", f"type={value}", "vm=web1", "--minimal") == xe.q(
        "vbd-list", "vm=web1", "--minimal"
    )


def test_vbd_create_type_cd(xe):
    cd = xe.ok("vbd-create", "vm-uuid=db1", "device=3", "type=CD", "mode=RO").strip()
    assert xe.q("vbd-param-get", f"uuid={cd}", "param-name=type") == "CD\n"


def test_vdi_type_prints_user(xe):
    assert set(xe.ok("vdi-list", "sr=nfs", "type=user", "params=type", "--minimal").strip().split(",")) == {
        "User"
    }


# --- 7. parameters xe scripts give that change nothing in vmctl's model ----------------------------------------
def test_pool_join_with_xe_credentials(xe):
    xe.ok(
        "--host=h3", "pool-join", "master-address=10.0.0.1", "master-username=root", "master-password=s3cret"
    )
    assert xe.q("host-param-get", "uuid=h3", "param-name=pool") == xe.q(
        "pool-list", "name-label=p1", "--minimal"
    )
    journal = xe.q("journal-list", "-f", "json")
    assert "s3cret" not in journal and "master-password=***" in journal


def test_pool_join_credentials_never_printed(xe):
    r = xe.fail(
        "pool-join", "host=h3", "master-address=10.9.9.9", "master-password=s3cret", code="UUID_INVALID"
    )
    assert "s3cret" not in r.err


def test_pool_join_without_a_host(xe):
    r = xe.fail("pool-join", "master-address=10.0.0.1", "master-username=root", "master-password=x")
    assert r.err.startswith("vmctl: MISSING_PARAMETER:") and "name: host" in r.err


def test_pool_join_host_from_vmctl_host(xe):
    assert xe.run("pool-join", "master-address=10.0.0.1", env={"VMCTL_HOST": "h3"}).rc == 0
    assert xe.q("host-param-get", "uuid=h3", "param-name=pool") == xe.q(
        "pool-list", "name-label=p1", "--minimal"
    )


def test_pool_ha_enable_heartbeat_sr_uuids(xe):
    xe.ok("pool-ha-enable", "pool=p1", f"heartbeat-sr-uuids={uuid(xe, 'sr', 'nfs')}", "ha-config:timeout=60")
    assert xe.q("pool-param-get", "uuid=p1", "param-name=ha-enabled").strip() == "true"


def test_pool_ha_enable_heartbeat_sr_must_reach_every_host(xe):
    """Xha_statefile.check_sr_can_host_statefile: the statefile SR needs a PBD on every host of
    the pool (SR_HAS_NO_PBDS), which a local SR of a pool of several hosts lacks."""
    local = xe.q("sr-create", "name-label=local", "type=ext", "physical-size=10GiB", "host=h1").strip()
    xe.fail("pool-ha-enable", "pool=p1", f"heartbeat-sr-uuids={local}", code="SR_HAS_NO_PBDS")


def test_vbd_unplug_timeout(xe):
    vbd = xe.q("vbd-list", "vm=web1", "--minimal").strip()
    xe.ok("vbd-unplug", f"uuid={vbd}", "timeout=30")
    assert xe.q("vbd-param-get", f"uuid={vbd}", "param-name=currently-attached").strip() == "false"


def test_vif_create_mac_random(xe):
    net = xe.q("network-list", "bridge=xenbr0", "pool=p1", "--minimal").strip()
    vif = xe.ok("vif-create", "vm-uuid=db1", f"network-uuid={net}", "device=1", "mac=random").strip()
    mac = xe.q("vif-param-get", f"uuid={vif}", "param-name=MAC").strip()
    assert len(mac.split(":")) == 6 and int(mac.split(":")[0], 16) & 2  # locally administered


def test_vm_migrate_vif_map(xe):
    vif = xe.q("vif-list", "vm=web1", "--minimal").strip()
    net = xe.q("vif-param-get", f"uuid={vif}", "param-name=network-uuid").strip()
    xe.ok("vm-migrate", "vm=web1", "host=h2", f"vif:{vif}={net}", "compress=true")
    assert xe.q("vm-param-get", "uuid=web1", "param-name=resident-on").strip() == uuid(xe, "host", "h2")


def test_vm_migrate_vif_map_to_another_network(xe):
    vif = xe.q("vif-list", "vm=web1", "--minimal").strip()
    other = xe.q("network-create", "name-label=other", "pool=p1").strip()
    r = xe.fail("vm-migrate", "vm=web1", "host=h2", f"vif:{vif}={other}", code="OPERATION_NOT_ALLOWED")
    assert "vif-move" in r.err


def test_vm_migrate_cross_pool_refused_with_the_reason(xe):
    r = xe.fail("vm-migrate", "vm=web1", "remote-master=10.1.1.1", code="UNKNOWN_PARAMETER")
    assert "cross-pool" in r.err


# --- 8. behaviour ---------------------------------------------------------------------------------------------
def test_vm_disk_list_minimal(xe):
    vbd = xe.q("vbd-list", "vm=web1", "--minimal").strip()
    vdi = xe.q("vbd-list", "vm=web1", "params=vdi", "--minimal").strip()
    assert xe.ok("vm-disk-list", "vm=web1", "--minimal") == f"{vbd},{vdi}\n"


def test_vm_disk_list_vbd_and_vdi_params(xe):
    out = xe.ok("vm-disk-list", "vm=web1", "vbd-params=uuid,userdevice", "vdi-params=uuid,sr-name-label")
    assert out.startswith("Disk 0 VBD:\n") and "Disk 0 VDI:\n" in out and "sr-name-label ( RO): nfs" in out


def test_vm_shutdown_multiple_without_selector(xe):
    xe.q("vm-start", "vm=db1")
    xe.ok("vm-shutdown", "--multiple")
    assert json.loads(xe.q("vm-list", "params=power-state", "-f", "json")) == [{"power-state": "halted"}] * 2


def test_vm_shutdown_without_selector_or_multiple(xe):
    xe.fail("vm-shutdown", code="MISSING_PARAMETER")


def test_sr_destroy_asks_unlike_xe(xe):
    """One of the destructive commands that list what they destroy and ask (model.md §0): xe's
    sr-destroy does not, so a ported script adds --yes (README, Differences from XAPI)."""
    empty = xe.q("sr-create", "name-label=empty", "type=nfs", "physical-size=1GiB", "pool=p1").strip()
    for pbd in minimal(xe.q("pbd-list", f"sr-uuid={empty}", "--minimal")):
        xe.q("pbd-unplug", f"uuid={pbd}")  # as xe's sr-destroy needs (SR_HAS_PBD)
    xe.fail("sr-destroy", f"uuid={empty}", code="CONFIRMATION_REQUIRED")
    xe.ok("sr-destroy", f"uuid={empty}", "--yes")
    assert xe.q("sr-list", "name-label=empty", "--minimal").strip() == ""


def test_vm_param_remove_of_an_absent_key_fails_as_xe(xe):
    """xe's param-remove refuses a key the map does not hold ("Key k is not in map"), as
    model.md §3.8 says; a key that is there goes."""
    xe.q("vm-param-set", "uuid=db1", "other-config:a=1")
    xe.fail(
        "vm-param-remove", "uuid=db1", "param-name=other-config", "param-key=zz", code="MAP_KEY_NOT_FOUND"
    )
    assert xe.q("vm-param-get", "uuid=db1", "param-name=other-config") == "a: 1\n"


@pytest.mark.parametrize("name", ["IP", "DNS", "MTU"])
def test_upper_case_params_print_their_fields(xe, name):
    cls = "network" if name == "MTU" else "pif"
    out = json.loads(xe.ok(f"{cls}-list", f"params=uuid,{name}", "-f", "json"))
    ours = json.loads(xe.q(f"{cls}-list", f"params=uuid,{name.lower()}", "-f", "json"))
    assert out and out == [{"uuid": r["uuid"], name: r[name.lower()]} for r in ours]


def test_unknown_params_name_is_a_clean_error(xe):
    xe.fail("pif-list", "params=NOPE", code="UNKNOWN_FIELD")
