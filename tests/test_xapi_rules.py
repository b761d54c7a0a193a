"""The rules vmctl takes from XAPI, each checked against what XAPI's source does: every test names
the file and function of xapi-project/xen-api (or xapi-project/sm) whose behaviour it pins down.
The commands run in-process on a small pool: two hosts, a shared NFS SR as the default SR."""

from __future__ import annotations

import json
import shutil

import pytest
from cli_helpers import cli, with_txn

GiB, MiB = 1024**3, 1024**2


class Lab:
    """One inventory and the commands on it: `ok` returns stdout, `fail` the error as JSON."""

    def __init__(self, db):
        self.db = db

    def ok(self, *args: str) -> str:
        p = cli(self.db, *args)
        assert p.returncode == 0, f"vmctl {' '.join(args)}: {p.stderr}"
        return p.stdout.strip()

    def fail(self, code: str, *args: str) -> dict:
        p = cli(self.db, "-f", "json", *args)
        assert p.returncode == 1, f"vmctl {' '.join(args)} did not fail: {p.stdout}"
        assert p.stdout == ""
        err = json.loads(p.stderr)["error"]
        assert err["code"] == code, f"vmctl {' '.join(args)}: {err}"
        return err

    def get(self, cls: str, name: str, field: str) -> str:
        return self.ok(f"{cls}-param-get", f"uuid={name}", f"param-name={field}")

    def uuid(self, cls: str, **filters: str) -> str:
        return self.ok(f"{cls}-list", *(f"{k}={v}" for k, v in filters.items()), "--minimal")

    def state(self) -> dict:
        from vmctl.model import CLASSES

        return with_txn(
            self.db, lambda t: {c: sorted(t.all(c), key=lambda r: r["uuid"]) for c in CLASSES}, write=False
        )


@pytest.fixture(scope="module")
def lab_template(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("xapi") / "inv.db")
    lab.ok(
        "pool-create", "name-label=p1",
        "--", "host-add", "name-label=h1", "address=10.0.0.1", "cpu-count=16", "memory-total=64GiB",
        "pool=p1", "pifs=eth0,eth1",
        "--", "host-add", "name-label=h2", "address=10.0.0.2", "cpu-count=16", "memory-total=64GiB",
        "pool=p1", "pifs=eth0,eth1",
        "--", "sr-create", "name-label=nfs", "type=nfs", "physical-size=1TiB", "pool=p1",
        "--", "pool-param-set", "uuid=p1", "default-sr=nfs",
    )  # fmt: skip
    return lab.db


@pytest.fixture
def lab(lab_template, tmp_path) -> Lab:
    """Pool p1: hosts h1 and h2 (16 CPUs, 64 GiB, eth0 and eth1), a shared NFS SR as default SR."""
    db = tmp_path / "inv.db"
    shutil.copy(lab_template, db)
    return Lab(db)


def running(lab: Lab, name: str, host: str = "h1", *extra: str) -> None:
    lab.ok(
        "vm-create", f"name-label={name}", "memory=1GiB", *extra, "--", "vm-start", f"vm={name}", f"on={host}"
    )


# --- 1. destructive operations XAPI refuses -----------------------------------------------------------------
def test_sr_destroy_and_forget_need_every_pbd_unplugged(lab):
    """xapi_sr.assert_all_pbds_unplugged, Xapi_sr_operations.valid_operations (check_any_attached_pbds):
    SR.destroy and SR.forget fail SR_HAS_PBD [sr] while a PBD is attached."""
    before = lab.state()
    err = lab.fail("SR_HAS_PBD", "sr-destroy", "uuid=nfs", "--force")
    assert set(err["params"]) == {"sr"}
    lab.fail("SR_HAS_PBD", "sr-forget", "uuid=nfs")
    assert lab.state() == before


def unplug_all(lab: Lab, sr: str) -> None:
    for pbd in lab.uuid("pbd", sr=lab.uuid("sr", **{"name-label": sr})).split(","):
        lab.ok("pbd-unplug", f"uuid={pbd}")


def test_sr_destroy_of_an_sr_with_vdis_is_sr_not_empty(lab):
    """Xapi_sr_operations.valid_operations (check_any_managed_vdis): SR.destroy of an SR holding a
    managed VDI fails SR_NOT_EMPTY (with model.md's [sr]); XAPI never destroys VDIs as a side
    effect."""
    vdi = lab.ok("vdi-create", "sr-uuid=nfs", "name-label=d", "virtual-size=1GiB")
    unplug_all(lab, "nfs")
    before = lab.state()
    err = lab.fail("SR_NOT_EMPTY", "sr-destroy", "uuid=nfs", "--force")
    assert set(err["params"]) == {"sr"}
    assert lab.state() == before
    lab.ok("pbd-plug", f"uuid={lab.uuid('pbd', host=lab.uuid('host', **{'name-label': 'h1'}))}")
    lab.ok("vdi-destroy", f"uuid={vdi}")
    unplug_all(lab, "nfs")
    lab.ok("sr-destroy", "uuid=nfs", "--force")
    assert lab.uuid("sr") == "" and lab.uuid("pbd") == ""


def test_sr_destroy_without_any_pbd_is_sr_has_no_pbds(lab):
    """Xapi_sr_operations.valid_operations (check_no_pbds): SR.destroy needs a PBD for the backend
    to act through: SR_HAS_NO_PBDS [sr]. A shared SR of a pool without hosts has none."""
    lab.ok("pool-create", "name-label=empty", "--", "sr-create", "name-label=lonely", "type=nfs",
           "physical-size=1TiB", "pool=empty")  # fmt: skip
    lab.fail("SR_HAS_NO_PBDS", "sr-destroy", "uuid=lonely", "--force")


def test_sr_forget_of_unplugged_sr_drops_its_records(lab):
    """xapi_sr.really_forget: SR.forget removes the SR, PBD and VDI records (the data stays)."""
    lab.ok("vdi-create", "sr-uuid=nfs", "name-label=d", "virtual-size=1GiB")
    unplug_all(lab, "nfs")
    lab.ok("sr-forget", "uuid=nfs")
    assert lab.uuid("sr") == "" and lab.uuid("vdi") == "" and lab.uuid("pbd") == ""


def test_host_forget_of_a_live_host_is_host_is_live(lab):
    """xapi_host.precheck_destroy_declare_dead: Host.destroy of a live host, or of the master,
    fails HOST_IS_LIVE; a disabled but live host is still live."""
    before = lab.state()
    lab.ok("host-disable", "host=h2")
    lab.fail("HOST_IS_LIVE", "host-disable", "host=h2", "--", "host-forget", "host=h2", "--force")
    lab.ok("host-enable", "host=h2")
    assert lab.state()["host"] == before["host"]
    lab.ok("host-declare-dead", "uuid=h1")
    lab.fail("HOST_IS_LIVE", "host-forget", "host=h1", "--force")  # h1 is the master
    lab.ok("host-recover", "host=h1", "--", "host-declare-dead", "uuid=h2")
    lab.ok("host-forget", "host=h2", "--force")
    assert lab.uuid("host", **{"name-label": "h2"}) == ""


def test_host_forget_with_ha_on_is_ha_is_enabled(lab):
    """xapi_host.destroy (CA-23732): HA_IS_ENABLED while HA is enabled on the pool."""
    lab.ok("pool-ha-enable", "pool=p1", "ha-host-failures-to-tolerate=0")
    lab.ok("host-declare-dead", "uuid=h2")
    lab.fail("HA_IS_ENABLED", "host-forget", "host=h2", "--force")


# --- 2. blocked-operations: XAPI's operation names -------------------------------------------------------------
BLOCKED = [
    # (command line after the VM is prepared, XAPI operation it is, initial state)
    (["vm-start", "vm=v"], "start", "halted"),
    (["vm-start", "vm=v", "on=h1"], "start_on", "halted"),
    (["vm-shutdown", "vm=v"], "clean_shutdown", "running"),
    (["vm-shutdown", "vm=v", "--force"], "hard_shutdown", "running"),
    (["vm-reboot", "vm=v"], "clean_reboot", "running"),
    (["vm-reboot", "vm=v", "--force"], "hard_reboot", "running"),
    (["vm-suspend", "vm=v"], "suspend", "running"),
    (["vm-resume", "vm=v"], "resume", "suspended"),
    (["vm-resume", "vm=v", "on=h2"], "resume_on", "suspended"),
    (["vm-pause", "vm=v"], "pause", "running"),
    (["vm-unpause", "vm=v"], "unpause", "paused"),
    (["vm-migrate", "vm=v", "host=h2"], "pool_migrate", "running"),
    (["vm-migrate", "vm=v", "vdi:DISK=nfs2"], "migrate_send", "running"),
    (["vm-snapshot", "vm=v", "new-name-label=s"], "snapshot", "halted"),
    (["vm-checkpoint", "vm=v", "new-name-label=s"], "checkpoint", "running"),
    (["vm-clone", "vm=v", "new-name-label=c"], "clone", "halted"),
    (["vm-copy", "vm=v", "new-name-label=c"], "copy", "halted"),
    (["vm-destroy", "uuid=v"], "destroy", "halted"),
    (["vm-uninstall", "vm=v", "--force"], "destroy", "halted"),
    (["vm-vcpus-set", "vm=v", "vcpus=2"], "changing_VCPUs", "halted"),
    (["vm-param-set", "uuid=v", "vcpus=2"], "changing_VCPUs", "halted"),
    (["vm-memory-set", "vm=v", "memory=2GiB"], "changing_memory_limits", "halted"),
    (["vm-memory-static-range-set", "vm=v", "min=1GiB", "max=2GiB"], "changing_static_range", "halted"),
    (["vm-memory-dynamic-range-set", "vm=v", "min=1GiB", "max=1GiB"], "changing_dynamic_range", "halted"),
    (["vm-param-set", "uuid=v", "is-a-template=true"], "make_into_template", "halted"),
    (["vm-reset-powerstate", "vm=v", "--force"], "power_state_reset", "running"),
]


#: The cases the fast tier runs (one of each kind of command); the others are in the slow tier.
FAST_BLOCKED = {"start_on", "hard_shutdown", "pool_migrate", "migrate_send", "changing_VCPUs", "destroy"}


@pytest.mark.parametrize(
    "args,op,state",
    [pytest.param(*b, marks=() if b[1] in FAST_BLOCKED else pytest.mark.slow) for b in BLOCKED],
    ids=[" ".join(b[0][:1] + b[0][2:]) for b in BLOCKED],
)
def test_every_xapi_operation_name_blocks_its_operation(lab, args, op, state):
    """xapi_vm_lifecycle.check_operation_error: a key of blocked-operations named as XAPI names
    the operation (Record_util.vm_operation_table) refuses it with OPERATION_BLOCKED
    before any other check (message_forwarding: VM.start_on is `start_on`, VM.hard_shutdown
    `hard_shutdown`...)."""
    lab.ok("sr-create", "name-label=nfs2", "type=nfs", "physical-size=1TiB", "pool=p1")
    lab.ok("vm-create", "name-label=v", "memory=1GiB", "--", "vm-disk-add", "vm=v", "disk-size=1GiB")
    if state != "halted":
        lab.ok("vm-start", "vm=v", "on=h1")
    if state == "suspended":
        lab.ok("vm-suspend", "vm=v")
    if state == "paused":
        lab.ok("vm-pause", "vm=v")
    disk = lab.ok("vbd-list", "vm=v", "params=vdi", "--minimal")
    args = [a.replace("DISK", disk) for a in args]
    lab.ok("vm-param-set", "uuid=v", f"blocked-operations:{op}=in maintenance")
    before = lab.state()
    err = lab.fail("OPERATION_BLOCKED", *args)
    # model.md §0's params [vm, operation] with XAPI's reason (OPERATION_BLOCKED [vm; reason])
    assert (err["params"]["operation"], err["params"]["reason"]) == (op, "in maintenance")
    assert op in err["message"]
    assert lab.state() == before
    lab.ok("vm-param-remove", "uuid=v", "param-name=blocked-operations", f"param-key={op}")
    lab.ok(*args)


def test_rebalancing_leaves_vms_whose_pool_migrate_is_blocked(lab):
    """A rebalancing move is XAPI's VM.pool_migrate: a VM blocking it stays where it is."""
    for i in range(4):
        lab.ok(
            "vm-create", f"name-label=v{i}", "memory=8GiB", "vcpus=4", "--", "vm-start", f"vm=v{i}", "on=h1"
        )
    plan = json.loads(lab.ok("pool-rebalance", "--dry-run", "-f", "json"))
    assert plan["moves"]
    for i in range(4):
        lab.ok("vm-param-set", f"uuid=v{i}", "blocked-operations:pool_migrate=pinned")
    assert json.loads(lab.ok("pool-rebalance", "--dry-run", "-f", "json"))["moves"] == []


def test_blocked_operations_keys_are_xapi_operation_names(lab):
    """Record_util.string_to_vm_operation: any other key is INVALID_VALUE [blocked_operation, key]
    (the dash spelling vmctl's commands use is not a key)."""
    lab.ok("vm-create", "name-label=v", "memory=1GiB")
    err = lab.fail("INVALID_VALUE", "vm-param-set", "uuid=v", "blocked-operations:hard-shutdown=x")
    assert err["params"] == {"name": "blocked_operation", "value": "hard-shutdown"}
    lab.fail("INVALID_VALUE", "vm-create", "name-label=w", "blocked-operations:migrate=x")
    lab.ok("vm-param-set", "uuid=v", "blocked-operations:changing_VCPUs=x")


def test_every_name_of_xapis_vm_operations_is_a_key():
    """xapi_vm_lifecycle.allowed_power_states matches every member of XAPI's vm_operations enum
    (datamodel_vm.ml): each is a blocked-operations key, and no other name is."""
    from vmctl.operations import VM_OPERATIONS

    xapi = {
        *("assert_operation_valid", "awaiting_memory_live", "call_plugin", "changing_NVRAM"),
        *("changing_VCPUs", "changing_VCPUs_live", "changing_dynamic_range", "changing_memory_limits"),
        *("changing_memory_live", "changing_shadow_memory", "changing_shadow_memory_live"),
        *("changing_static_range", "checkpoint", "clean_reboot", "clean_shutdown", "clone", "copy"),
        *("create_template", "create_vtpm", "csvm", "data_source_op", "destroy", "export"),
        *("get_boot_record", "hard_reboot", "hard_shutdown", "import", "make_into_template"),
        *("metadata_export", "migrate_send", "pause", "pool_migrate", "power_state_reset"),
        *("provision", "query_services", "resume", "resume_on", "revert", "reverting"),
        *("send_sysrq", "send_trigger", "shutdown", "snapshot", "snapshot_with_quiesce", "start"),
        *("start_on", "suspend", "sysprep", "unpause", "update_allowed_operations"),
    }
    assert VM_OPERATIONS == xapi


def test_allowed_operations_are_xapi_names(lab):
    """xapi_vm_lifecycle.update_allowed_operations: what passes the checks now, by XAPI's names,
    without the blocked ones."""
    running(lab, "v")
    lab.ok("vm-param-set", "uuid=v", "blocked-operations:pool_migrate=x")
    ops = lab.get("vm", "v", "allowed-operations").split("; ")
    assert {
        "clean_shutdown",
        "hard_shutdown",
        "suspend",
        "checkpoint",
        "snapshot",
        "changing_dynamic_range",
    } <= set(ops)
    assert "pool_migrate" not in ops and "start" not in ops and "revert" not in ops
    lab.ok("vm-param-set", "uuid=v", "platform:nomigrate=true")
    ops = lab.get("vm", "v", "allowed-operations").split("; ")
    assert "suspend" not in ops and "checkpoint" not in ops and "migrate_send" not in ops


def test_allowed_operations_leave_out_what_xapi_leaves_out(lab):
    """xapi_vm_lifecycle.update_allowed_operations lists allowable_ops only: ignored_ops
    (changing_VCPUs, changing_memory_limits, power_state_reset) never appear, though they run."""
    lab.ok("vm-create", "name-label=v", "memory=1GiB")
    ops = lab.get("vm", "v", "allowed-operations").split("; ")
    assert {"start", "changing_static_range", "make_into_template", "destroy"} <= set(ops)
    assert not {"changing_VCPUs", "changing_memory_limits", "power_state_reset"} & set(ops)
    lab.ok("vm-vcpus-set", "vm=v", "vcpus=2", "--", "vm-memory-set", "vm=v", "memory=2GiB")


def test_allowed_operations_during_a_rolling_upgrade(lab):
    """xapi_vm_lifecycle.update_allowed_operations: during a rolling upgrade the allowed
    operations are cut to Xapi_globs.rpu_allowed_vm_operations (no snapshot, checkpoint or
    memory change; start, migration and shutdown stay)."""
    running(lab, "v")
    assert {"snapshot", "checkpoint"} <= set(lab.get("vm", "v", "allowed-operations").split("; "))
    upgrade(lab, "h2", "1.1.0")
    ops = set(lab.get("vm", "v", "allowed-operations").split("; "))
    assert {"clean_shutdown", "pool_migrate", "suspend"} <= ops
    assert not {"snapshot", "checkpoint", "changing_dynamic_range"} & ops


# --- 3. evacuation and migration ---------------------------------------------------------------------------------
def test_evacuate_reports_the_vm_own_error(lab):
    """xapi_host.evacuate raises the plan's error for a VM (VM_REQUIRES_SR for a disk only the
    host reaches), not a summary code; nothing moves."""
    lab.ok("sr-create", "name-label=local1", "type=lvm", "physical-size=100GiB", "host=h1")
    lab.ok("vm-create", "name-label=loc", "memory=1GiB", "--", "vm-disk-add", "vm=loc", "disk-size=1GiB",
           "sr-uuid=local1", "--", "vm-start", "vm=loc", "on=h1")  # fmt: skip
    running(lab, "fine")
    before = lab.state()
    err = lab.fail("VM_REQUIRES_SR", "host-evacuate", "host=h1")
    assert err["params"]["sr"].startswith(lab.uuid("sr", **{"name-label": "local1"}))
    assert "loc" in err["message"]
    assert lab.state() == before
    rows = lab.ok("host-get-vms-which-prevent-evacuation", "host=h1", "-f", "csv")
    assert "VM_REQUIRES_SR" in rows and "fine" not in rows


def test_evacuate_with_no_other_enabled_host_is_no_hosts_available(lab):
    """xapi_host.compute_evacuation_plan_no_wlb: no other enabled host: NO_HOSTS_AVAILABLE [vm]."""
    running(lab, "v")
    lab.ok("host-disable", "host=h2")
    err = lab.fail("NO_HOSTS_AVAILABLE", "host-evacuate", "host=h1")
    assert set(err["params"]) == {"vm"}


def test_evacuate_without_targets_is_no_hosts_available_first(lab):
    """xapi_host.compute_evacuation_plan_no_wlb returns NO_HOSTS_AVAILABLE for every VM as soon
    as no other enabled host is at least as new, before any VM's own checks: a paused VM there
    is NO_HOSTS_AVAILABLE too, not VM_BAD_POWER_STATE."""
    running(lab, "p")
    lab.ok("vm-pause", "vm=p", "--", "host-disable", "host=h2")
    err = lab.fail("NO_HOSTS_AVAILABLE", "host-evacuate", "host=h1")
    assert err["params"]["vm"].startswith(lab.uuid("vm", **{"name-label": "p"}))
    lab.ok("host-enable", "host=h2")
    lab.fail("VM_BAD_POWER_STATE", "host-evacuate", "host=h1")


def test_evacuate_refuses_immobile_and_paused_vms(lab):
    """xapi_host.compute_evacuation_plan_no_wlb runs each VM's VM.pool_migrate checks: an immobile
    VM fails VM_IS_IMMOBILE, a paused one VM_BAD_POWER_STATE (pool_migrate needs running)."""
    running(lab, "imm", "h1", "platform:nomigrate=true")
    lab.fail("VM_IS_IMMOBILE", "host-evacuate", "host=h1")
    lab.ok("vm-shutdown", "vm=imm", "--force", "--", "vm-destroy", "uuid=imm")
    running(lab, "p")
    lab.ok("vm-pause", "vm=p")
    err = lab.fail("VM_BAD_POWER_STATE", "host-evacuate", "host=h1")
    assert err["params"]["expected"] == "running" and err["params"]["actual"] == "paused"


def test_evacuate_when_memory_runs_out(lab):
    """xapi_host.compute_evacuation_plan_no_wlb: a VM the other hosts have no room for fails
    HOST_NOT_ENOUGH_FREE_MEMORY."""
    lab.ok("vm-create", "name-label=big", "memory=40GiB", "--", "vm-start", "vm=big", "on=h1")
    lab.ok("vm-create", "name-label=big2", "memory=40GiB", "--", "vm-start", "vm=big2", "on=h2")
    lab.fail("HOST_NOT_ENOUGH_FREE_MEMORY", "host-evacuate", "host=h1")


def test_evacuate_with_ha_refuses_unprotected_vms(lab):
    """xapi_host.compute_evacuation_plan_no_wlb: with HA enabled, a VM HA does not protect fails
    HOST_EVACUATE_VM_NOT_HA_PROTECTED [vm] (it must be shut down or suspended first)."""
    running(lab, "plain")
    lab.ok("pool-ha-enable", "pool=p1", "ha-host-failures-to-tolerate=0")
    err = lab.fail("HOST_EVACUATE_VM_NOT_HA_PROTECTED", "host-evacuate", "host=h1")
    assert set(err["params"]) == {"vm"}
    lab.ok("vm-param-set", "uuid=plain", "ha-restart-priority=restart")
    lab.ok("host-evacuate", "host=h1")
    assert lab.get("vm", "plain", "resident-on") == lab.uuid("host", **{"name-label": "h2"})


def test_pool_migrate_needs_a_running_vm(lab):
    """xapi_vm_lifecycle.allowed_power_states: pool_migrate [Running]; migrate_send [Halted;
    Suspended; Running]: a paused VM moves neither way."""
    running(lab, "v")
    lab.ok("vm-pause", "vm=v")
    err = lab.fail("VM_BAD_POWER_STATE", "vm-migrate", "vm=v", "host=h2")
    assert err["params"]["expected"] == "running"
    lab.ok("vm-unpause", "vm=v", "--", "vm-migrate", "vm=v", "host=h2")


def test_migration_checks_the_cpu_before_mobility(lab):
    """message_forwarding VM.pool_migrate: Cpuid_helpers.assert_vm_is_compatible runs before the
    operation checks (so before VM_IS_IMMOBILE); --force skips both (~strict:(not force))."""
    lab.ok("host-disable", "host=h2", "--", "host-update", "host=h2", "cpu-vendor=AuthenticAMD", "--force",
           "--", "host-enable", "host=h2")  # fmt: skip
    running(lab, "v", "h1", "platform:nomigrate=true")
    lab.fail("VM_INCOMPATIBLE_WITH_THIS_HOST", "vm-migrate", "vm=v", "host=h2")
    lab.ok("vm-migrate", "vm=v", "host=h2", "--force")


# --- 4. memory: XAPI's start check counts dynamic-min ------------------------------------------------------
def test_default_memory_policy_is_dynamic(lab):
    """memory_check.vm_compute_start_memory (policy Dynamic_min) and
    host_compute_free_memory_with_maximum_compression: a VM needs its dynamic-min, the VMs running
    count theirs. The stricter static-max accounting stays as memory-overcommit-policy=none."""
    assert lab.get("pool", "p1", "memory-overcommit-policy") == "dynamic"
    lab.ok("vm-create", "name-label=v", "memory=80GiB", "memory-static-min=1GiB", "memory-dynamic-min=8GiB")
    lab.ok("vm-start", "vm=v", "on=h1")
    lab.ok(
        "vm-shutdown", "vm=v", "--force", "--", "pool-param-set", "uuid=p1", "memory-overcommit-policy=none"
    )
    lab.fail("HOST_NOT_ENOUGH_FREE_MEMORY", "vm-start", "vm=v", "on=h1")


# --- 5. versions ------------------------------------------------------------------------------------------------
def test_join_with_another_software_version_is_refused_even_with_force(lab):
    """xapi_pool.pre_join_checks assert_hosts_compatible: a different platform version fails
    HOSTS_NOT_COMPATIBLE [reason], whatever --force says (it skips only assert_hosts_homogeneous)."""
    lab.ok("host-add", "name-label=h3", "address=10.0.0.3", "cpu-count=8", "memory-total=32GiB",
           "software-version=1.1.0")  # fmt: skip
    err = lab.fail("HOSTS_NOT_COMPATIBLE", "pool-join", "host=h3", "pool=p1", "--force")
    assert err["params"] == {"reason": "Software versions differ"}
    lab.fail("HOSTS_NOT_COMPATIBLE", "host-add", "name-label=h4", "address=10.0.0.4", "cpu-count=8",
             "memory-total=32GiB", "software-version=1.0.1", "pool=p1", "--force")  # fmt: skip
    lab.ok("host-add", "name-label=h5", "address=10.0.0.5", "cpu-count=8", "memory-total=32GiB",
           "cpu-vendor=AuthenticAMD", "pool=p1", "--force")  # fmt: skip


def upgrade(lab: Lab, host: str, version: str) -> None:
    lab.ok("host-disable", f"host={host}", "--", "host-update", f"host={host}", f"software-version={version}",
           "--", "host-enable", f"host={host}")  # fmt: skip


def test_rolling_upgrade_restrictions(lab):
    """During a rolling pool upgrade (Helpers.Checks.RPU: the hosts run different versions): VM
    operations outside Xapi_globs.rpu_allowed_vm_operations fail NOT_SUPPORTED_DURING_UPGRADE
    (xapi_vm_lifecycle.check_operation_error); VM.start_on goes only to a host of the newest
    version and VM.start chooses one (message_forwarding VM.start_on, Xapi_vm_helpers
    .vm_can_run_on_host); VM.pool_migrate never to an older host; Pool.enable_ha waits
    (xapi_pool.enable_ha)."""
    lab.ok("vm-create", "name-label=v", "memory=1GiB", "--", "vm-start", "vm=v", "on=h1")
    upgrade(lab, "h2", "1.1.0")
    for args in (["vm-snapshot", "vm=v", "new-name-label=s"], ["vm-checkpoint", "vm=v", "new-name-label=s"],
                 ["vm-memory-dynamic-range-set", "vm=v", "min=1GiB", "max=1GiB"]):  # fmt: skip
        err = lab.fail("NOT_SUPPORTED_DURING_UPGRADE", *args)
        assert err["params"] == {}
    lab.ok("vm-create", "name-label=w", "memory=1GiB")
    lab.fail("NOT_SUPPORTED_DURING_UPGRADE", "vm-start", "vm=w", "on=h1")
    lab.ok("vm-start", "vm=w")
    h2 = lab.uuid("host", **{"name-label": "h2"})
    assert lab.get("vm", "w", "resident-on") == h2
    err = lab.fail("NOT_SUPPORTED_DURING_UPGRADE", "vm-migrate", "vm=w", "host=h1")
    assert set(err["params"]) == {"host", "vm"}  # the placement filter names the host it refused
    lab.ok("vm-migrate", "vm=v", "host=h2")
    lab.fail("NOT_SUPPORTED_DURING_UPGRADE", "pool-ha-enable", "pool=p1")
    lab.ok("vm-migrate", "vm=w", "host=h2", "--", "vm-shutdown", "vm=v", "--force")
    upgrade(lab, "h1", "1.1.0")
    lab.ok("vm-snapshot", "vm=w", "new-name-label=s")


# --- 6. bonds and VLANs ------------------------------------------------------------------------------------------
def pif(lab: Lab, host: str, device: str) -> str:
    return lab.uuid("pif", host=lab.uuid("host", **{"name-label": host}), device=device, vlan="-1")


def test_bond_takes_its_members_vlans_and_gives_them_back(lab):
    """xapi_bond.create moves the members' VLANs onto the bond (move_vlan: same tag and network,
    the bond's device), and xapi_bond.destroy moves them back to the primary member."""
    lab.ok("network-create", "name-label=bondnet", "--", "network-create", "name-label=v10")
    eth1 = pif(lab, "h1", "eth1")
    lab.ok("vlan-create", f"pif-uuid={eth1}", "vlan=10", "network-uuid=v10")
    bond = lab.ok("bond-create", "network-uuid=bondnet", f"pif-uuids={eth1}")  # one member: allowed
    bond_pif = lab.get("bond", bond, "master")
    vlan = lab.uuid("vlan")
    assert lab.get("vlan", vlan, "tagged-pif") == bond_pif and lab.get("vlan", vlan, "tag") == "10"
    vlan_pif = lab.get("vlan", vlan, "untagged-pif")
    assert lab.get("pif", vlan_pif, "device") == "bond0"
    v10_bridge = lab.get("network", "v10", "bridge")
    out = lab.ok("--host=h1", "br-to-parent", v10_bridge)
    assert out == lab.get("network", "bondnet", "bridge")
    lab.ok("bond-destroy", f"uuid={bond}")
    vlan = lab.uuid("vlan")
    assert lab.get("vlan", vlan, "tagged-pif") == eth1
    assert lab.ok("--host=h1", "br-to-parent", v10_bridge) == lab.get(
        "network", lab.get("pif", eth1, "network"), "bridge"
    )
    assert lab.ok("db-check").startswith("db-check: all")


def test_bond_create_checks_in_xapi_order(lab):
    """message_forwarding Bond.create then xapi_bond.create: no member first
    (PIF_BOND_NEEDS_MORE_MEMBERS), then the network (NETWORK_UNMANAGED), then each member
    (PIF_ALREADY_BONDED, PIF_VLAN_EXISTS for a VLAN PIF), then one host (PIF_CANNOT_BOND_CROSS_HOST),
    then at most one IP configuration (PIF_BOND_MORE_THAN_ONE_IP)."""
    lab.ok("network-create", "name-label=bn", "--", "network-create", "name-label=um", "managed=false",
           "--", "network-create", "name-label=v5")  # fmt: skip
    e0, e1 = pif(lab, "h1", "eth0"), pif(lab, "h1", "eth1")
    h2e1 = pif(lab, "h2", "eth1")
    lab.fail("PIF_BOND_NEEDS_MORE_MEMBERS", "bond-create", "network-uuid=um", "pif-uuids=")
    lab.fail("NETWORK_UNMANAGED", "bond-create", "network-uuid=um", f"pif-uuids={e1},{h2e1}")
    vp = lab.ok("vlan-create", f"pif-uuid={e1}", "vlan=5", "network-uuid=v5")
    lab.fail("PIF_VLAN_EXISTS", "bond-create", "network-uuid=bn", f"pif-uuids={vp},{h2e1}")
    lab.fail("PIF_CANNOT_BOND_CROSS_HOST", "bond-create", "network-uuid=bn", f"pif-uuids={e1},{h2e1}")
    lab.ok("pif-reconfigure-ip", f"uuid={e1}", "mode=dhcp")
    lab.fail("PIF_BOND_MORE_THAN_ONE_IP", "bond-create", "network-uuid=bn", f"pif-uuids={e0},{e1}")
    lab.ok("pif-reconfigure-ip", f"uuid={e1}", "mode=none")
    bond = lab.ok("bond-create", "network-uuid=bn", f"pif-uuids={e1},{e0}")
    # the primary member is the management one (xapi_bond.create), which the bond PIF replaces
    assert lab.get("bond", bond, "primary-slave") == e0
    assert lab.get("pif", lab.get("bond", bond, "master"), "management") == "true"
    lab.ok("network-create", "name-label=bn2")
    lab.fail("PIF_ALREADY_BONDED", "bond-create", "network-uuid=bn2", f"pif-uuids={e1}")


def test_management_bond_under_ha(lab):
    """xapi_bond.create / destroy: the management interface's bond status cannot change while HA
    is enabled (HA_CANNOT_CHANGE_BOND_STATUS_OF_MGMT_IFACE)."""
    lab.ok("network-create", "name-label=bn")
    lab.ok("pool-ha-enable", "pool=p1", "ha-host-failures-to-tolerate=0")
    lab.fail("HA_CANNOT_CHANGE_BOND_STATUS_OF_MGMT_IFACE", "bond-create", "network-uuid=bn",
             f"pif-uuids={pif(lab, 'h1', 'eth0')}")  # fmt: skip


# --- 7. HA enable -------------------------------------------------------------------------------------------------
def test_ha_enable_needs_a_statefile_sr(lab):
    """xapi_ha.enable: no SR can hold the statefile: CANNOT_CREATE_STATE_FILE;
    Xha_statefile.check_sr_can_host_statefile: a PBD on every host, attached (SR_HAS_NO_PBDS), a
    backend with VDI_GENERATE_CONFIG (xapi-project/sm: not the local LVHDSR:
    SR_OPERATION_NOT_SUPPORTED), 3,808 MiB free (SR_SOURCE_SPACE_INSUFFICIENT)."""
    unplug_all(lab, "nfs")
    err = lab.fail("CANNOT_CREATE_STATE_FILE", "pool-ha-enable", "pool=p1")
    assert err["params"] == {}
    lab.fail("SR_HAS_NO_PBDS", "pool-ha-enable", "pool=p1", "heartbeat-sr-uuids=nfs")
    lab.ok("sr-create", "name-label=lvm1", "type=lvm", "physical-size=100GiB", "host=h1")
    lab.ok("sr-create", "name-label=small", "type=nfs", "physical-size=3GiB", "pool=p1")
    lab.fail("SR_SOURCE_SPACE_INSUFFICIENT", "pool-ha-enable", "pool=p1", "heartbeat-sr-uuids=small")
    lab.ok("pool-create", "name-label=solo", "--", "host-add", "name-label=s1", "address=10.1.0.1",
           "cpu-count=8", "memory-total=32GiB", "pool=solo", "--", "sr-create", "name-label=slvm",
           "type=lvm", "physical-size=100GiB", "host=s1")  # fmt: skip
    lab.fail("SR_OPERATION_NOT_SUPPORTED", "pool-ha-enable", "pool=solo", "heartbeat-sr-uuids=slvm")
    lab.fail("CANNOT_CREATE_STATE_FILE", "pool-ha-enable", "pool=solo")


def test_ha_enable_on_one_host_and_without_a_plan(lab):
    """xapi_ha.enable checks no host count, and a pool without a failover plan is enabled and
    marked overcommitted (Xapi_ha_vm_failover.update_pool_status), not refused."""
    lab.ok("pool-create", "name-label=solo", "--", "host-add", "name-label=s1", "address=10.1.0.1",
           "cpu-count=8", "memory-total=32GiB", "pool=solo", "--", "sr-create", "name-label=sext",
           "type=ext", "physical-size=100GiB", "host=s1")  # fmt: skip
    lab.ok("pool-ha-enable", "pool=solo", "ha-host-failures-to-tolerate=0")
    assert lab.get("pool", "solo", "ha-enabled") == "true"
    for name, host in (("big", "h1"), ("big2", "h2")):
        lab.ok("vm-create", f"name-label={name}", "memory=40GiB", "ha-restart-priority=restart", "pool=p1",
               "--", "vm-start", f"vm={name}", f"on={host}")  # fmt: skip
    lab.ok("pool-ha-enable", "pool=p1", "ha-host-failures-to-tolerate=1")
    assert lab.get("pool", "p1", "ha-enabled") == "true"
    assert lab.get("pool", "p1", "ha-overcommitted") == "true"


def test_restart_priority_on_a_local_disk_vm(lab):
    """xapi_vm.set_ha_restart_priority: no agility check; only a running VM under HA is admitted
    (assert_new_vm_preserves_ha_plan: a VM that cannot restart elsewhere breaks the plan)."""
    lab.ok("sr-create", "name-label=local1", "type=lvm", "physical-size=100GiB", "host=h1")
    lab.ok("vm-create", "name-label=loc", "memory=1GiB", "--", "vm-disk-add", "vm=loc", "disk-size=1GiB",
           "sr-uuid=local1", "--", "vm-start", "vm=loc", "on=h1")  # fmt: skip
    lab.ok("vm-param-set", "uuid=loc", "ha-restart-priority=restart")
    lab.ok("vm-param-set", "uuid=loc", "ha-restart-priority=best-effort")
    lab.ok("pool-ha-enable", "pool=p1", "ha-host-failures-to-tolerate=1")
    lab.fail(
        "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN", "vm-param-set", "uuid=loc", "ha-restart-priority=restart"
    )
    lab.ok("vm-shutdown", "vm=loc", "--", "vm-param-set", "uuid=loc", "ha-restart-priority=restart")


# --- 8. MACs and device numbers ---------------------------------------------------------------------------------
def test_any_well_formed_mac_is_accepted(lab):
    """Xapi_vif_helpers.create checks Helpers.is_valid_MAC only (six hex pairs): Xen's 00:16:3e
    prefix, a multicast MAC and one another VM has are all accepted; a malformed one is
    MAC_INVALID [mac]."""
    lab.ok("vm-create", "name-label=a", "memory=1GiB", "--", "vm-create", "name-label=b", "memory=1GiB")
    net = "Pool-wide network associated with eth0"
    lab.ok("vif-create", "vm-uuid=a", f"network-uuid={net}", "device=0", "mac=00:16:3E:12:34:56")
    lab.ok("vif-create", "vm-uuid=b", f"network-uuid={net}", "device=0", "mac=00:16:3e:12:34:56")
    lab.ok("vif-create", "vm-uuid=b", f"network-uuid={net}", "device=1", "mac=01:00:5e:00:00:01")
    assert lab.ok("vif-list", "mac=00:16:3e:12:34:56", "--minimal").count(",") == 1
    err = lab.fail(
        "MAC_INVALID", "vif-create", "vm-uuid=a", f"network-uuid={net}", "device=1", "mac=00:16:3e"
    )
    assert err["params"] == {"mac": "00:16:3e"}
    lab.ok("vm-start", "vm=a", "on=h1", "--", "vm-start", "vm=b", "on=h1")
    assert lab.ok("db-check").startswith("db-check: all")


def test_device_numbers_are_xapis(lab):
    """Xapi_vbd_helpers.valid_device (Device_number: a Xen disk below 2^20) and
    Xapi_vm_helpers.allowed_VBD_devices (autodetect: 0-254); Xapi_vif_helpers.valid_device (any
    unsigned decimal). The order of VIF.create: INVALID_DEVICE, MAC_INVALID, DEVICE_ALREADY_EXISTS."""
    lab.ok("vm-create", "name-label=a", "memory=1GiB")
    vdi = lab.ok("vdi-create", "sr-uuid=nfs", "name-label=d", "virtual-size=1GiB")
    lab.ok("vbd-create", "vm-uuid=a", f"vdi-uuid={vdi}", "device=200")
    lab.fail("INVALID_DEVICE", "vbd-create", "vm-uuid=a", "type=cd", f"device={1 << 20}")
    lab.ok("vbd-create", "vm-uuid=a", "type=cd", f"device={(1 << 20) - 1}")
    net = "Pool-wide network associated with eth0"
    lab.ok("vif-create", "vm-uuid=a", f"network-uuid={net}", "device=16")
    lab.fail("INVALID_DEVICE", "vif-create", "vm-uuid=a", f"network-uuid={net}", "device=-1", "mac=zz")
    lab.fail("MAC_INVALID", "vif-create", "vm-uuid=a", f"network-uuid={net}", "device=16", "mac=zz")
    lab.fail("DEVICE_ALREADY_EXISTS", "vif-create", "vm-uuid=a", f"network-uuid={net}", "device=16")


# --- 9. check order and codes ------------------------------------------------------------------------------------
def test_check_order_blocked_power_then_template(lab):
    """xapi_vm_lifecycle.check_operation_error: blocked-operations, then the power state, then
    the template rule (check_template): a blocked template start is OPERATION_BLOCKED; a
    template resume is VM_BAD_POWER_STATE; a template start is VM_IS_TEMPLATE."""
    lab.ok("vm-create", "name-label=t", "memory=1GiB", "is-a-template=true")
    lab.fail("VM_IS_TEMPLATE", "vm-start", "vm=t")
    lab.fail("VM_BAD_POWER_STATE", "vm-resume", "vm=t")
    lab.ok("vm-param-set", "uuid=t", "blocked-operations:start=no")
    lab.fail("OPERATION_BLOCKED", "vm-start", "vm=t")
    lab.ok("vm-vcpus-set", "vm=t", "vcpus=2")  # changing_VCPUs: a template allows it


def test_expected_states_in_xapi_order(lab):
    """xapi_vm_lifecycle.report_power_state_error lists allowed_power_states in their order:
    hard_shutdown [Paused; Suspended; Running], hard_reboot [Paused; Running], destroy [Halted;
    Suspended], changing_dynamic_range [Halted; Running]."""
    lab.ok("vm-create", "name-label=v", "memory=1GiB")
    assert lab.fail("VM_BAD_POWER_STATE", "vm-shutdown", "vm=v", "--force")["params"]["expected"] == (
        "paused, suspended, running"
    )
    assert (
        lab.fail("VM_BAD_POWER_STATE", "vm-reboot", "vm=v", "--force")["params"]["expected"]
        == "paused, running"
    )
    lab.ok("vm-start", "vm=v", "on=h1", "--", "vm-pause", "vm=v")
    assert lab.fail("VM_BAD_POWER_STATE", "vm-destroy", "uuid=v")["params"]["expected"] == "halted, suspended"
    err = lab.fail("VM_BAD_POWER_STATE", "vm-memory-dynamic-range-set", "vm=v", "min=1GiB", "max=1GiB")
    assert err["params"]["expected"] == "halted, running"


def test_memory_order_and_vcpus_codes(lab):
    """Xapi_vm_memory_constraints.assert_valid: MEMORY_CONSTRAINT_VIOLATION_ORDER (no params);
    xapi_vm.set_VCPUs_max: vcpus below 1 is INVALID_VALUE."""
    lab.ok("vm-create", "name-label=v", "memory=2GiB")
    err = lab.fail("MEMORY_CONSTRAINT_VIOLATION_ORDER", "vm-param-set", "uuid=v", "memory-static-max=1GiB")
    assert err["params"] == {}
    lab.fail("MEMORY_CONSTRAINT_VIOLATION_ORDER", "vm-memory-limits-set", "vm=v", "static-min=1GiB",
             "dynamic-min=2GiB", "dynamic-max=1GiB", "static-max=2GiB")  # fmt: skip
    err = lab.fail("INVALID_VALUE", "vm-param-set", "uuid=v", "vcpus=0")
    assert err["params"]["name"] == "vcpus"
    lab.fail("INVALID_VALUE", "vm-create", "name-label=w", "vcpus=0")


def test_memory_is_checked_before_pcpus(lab):
    """xapi_vm_helpers.assert_can_boot_here: assert_enough_memory_available before
    assert_enough_pcpus: a VM too big on both counts reports memory."""
    lab.ok("vm-create", "name-label=v", "memory=100GiB", "vcpus=32")
    lab.fail("HOST_NOT_ENOUGH_FREE_MEMORY", "vm-start", "vm=v", "on=h1")
    lab.ok("vm-memory-set", "vm=v", "memory=1GiB")
    lab.fail("HOST_NOT_ENOUGH_PCPUS", "vm-start", "vm=v", "on=h1")


def test_eject_with_resident_vms_is_operation_not_allowed(lab):
    """xapi_pool.eject_self: a VM resident on the host: OPERATION_NOT_ALLOWED ["VM resident on host"];
    HA is checked before the master."""
    running(lab, "v", "h2")
    err = lab.fail("OPERATION_NOT_ALLOWED", "pool-eject", "host=h2", "--force")
    assert err["params"] == {"reason": "VM resident on host"}
    lab.ok("pool-ha-enable", "pool=p1", "ha-host-failures-to-tolerate=0")
    lab.fail("HA_IS_ENABLED", "pool-eject", "host=h1", "--force")


def test_suspend_and_checkpoint_of_an_immobile_vm(lab):
    """xapi_vm_lifecycle.check_operation_error: suspend, checkpoint, pool_migrate and migrate_send
    of a VM that is not mobile (platform:nomigrate true or 1) fail VM_IS_IMMOBILE."""
    running(lab, "v", "h1", "platform:nomigrate=1")
    lab.fail("VM_IS_IMMOBILE", "vm-suspend", "vm=v")
    lab.fail("VM_IS_IMMOBILE", "vm-checkpoint", "vm=v", "new-name-label=c")
    lab.ok("vm-snapshot", "vm=v", "new-name-label=s")


def test_nested_virt_makes_a_vm_immobile(lab):
    """xapi_vm_lifecycle.is_mobile: a VM whose platform:nested-virt is true (or 1) is not mobile,
    as with nomigrate: suspend and pool_migrate fail VM_IS_IMMOBILE; --force (strict=false)
    moves it; evacuation and rebalancing leave it where it is."""
    running(lab, "v", "h1", "platform:nested-virt=1")
    lab.fail("VM_IS_IMMOBILE", "vm-suspend", "vm=v")
    lab.fail("VM_IS_IMMOBILE", "vm-migrate", "vm=v", "host=h2")
    assert "VM_IS_IMMOBILE" in lab.ok("host-get-vms-which-prevent-evacuation", "host=h1", "-f", "csv")
    lab.ok("vm-migrate", "vm=v", "host=h2", "--force")
    assert lab.get("vm", "v", "resident-on") == lab.uuid("host", **{"name-label": "h2"})


def test_online_resize_is_not_supported(lab):
    """Xapi_vdi.check_sm_feature_error: VDI.resize_online needs the backend's VDI_RESIZE_ONLINE,
    which none of xapi-project/sm's drivers advertises: SR_OPERATION_NOT_SUPPORTED [sr] on every
    type; offline, an attached disk is VDI_IN_USE."""
    lab.ok("vm-create", "name-label=v", "memory=1GiB", "--", "vm-disk-add", "vm=v", "disk-size=1GiB",
           "--", "vm-start", "vm=v", "on=h1")  # fmt: skip
    disk = lab.ok("vbd-list", "vm=v", "params=vdi", "--minimal")
    lab.fail("SR_OPERATION_NOT_SUPPORTED", "vdi-resize", f"uuid={disk}", "disk-size=2GiB", "online=true")
    lab.fail("VDI_IN_USE", "vdi-resize", f"uuid={disk}", "disk-size=2GiB")
    lab.ok("vm-shutdown", "vm=v", "--", "vdi-resize", f"uuid={disk}", "disk-size=2GiB")


def test_a_checkpoint_may_be_hard_shut_down(lab):
    """xapi_vm_lifecycle.check_snapshot allows hard_shutdown on a snapshot: a checkpoint's memory
    image is discarded; a snapshot's start is still VM_IS_SNAPSHOT... after the power state."""
    running(lab, "v")
    snap = lab.ok("vm-checkpoint", "vm=v", "new-name-label=c")
    assert lab.get("vm", snap, "power-state") == "suspended"
    lab.ok("vm-shutdown", f"vm={snap}", "--force")
    assert lab.get("vm", snap, "power-state") == "halted" and lab.get("vm", snap, "suspend-vdi") == ""
    lab.fail("VM_IS_SNAPSHOT", "vm-start", f"vm={snap}")
    lab.fail("VM_BAD_POWER_STATE", "vm-resume", f"vm={snap}")


def test_default_template_destroy_is_vm_is_template(lab):
    """xapi_vm_lifecycle.check_template: destroy is allowed on a template unless it is a default
    one: VM_IS_TEMPLATE [vm, destroy]."""

    def make_default(t):
        u = t.insert("vm", {"name-label": "base", "is-a-template": True, "is-default-template": True,
                            "pool": t.resolve_one("pool", "p1")["uuid"]})  # fmt: skip
        return u

    with_txn(lab.db, make_default)
    err = lab.fail("VM_IS_TEMPLATE", "vm-destroy", "uuid=base")
    assert err["params"]["operation"] == "destroy"
    lab.fail("VM_IS_TEMPLATE", "vm-uninstall", "vm=base", "--force")


# --- 10. operations in progress ------------------------------------------------------------------------------------
def hold(lab: Lab, vm: str, op: str) -> str:
    """A pending task holding the VM, as a long operation of a real pool leaves one."""

    def fn(t):
        v = t.resolve_one("vm", vm)
        t.update("vm", v["uuid"], {"current-operations": [op]})
        return t.insert(
            "task", {"name-label": "vm-shutdown", "status": "pending", "objects": [f"vm:{v['uuid']}"]}
        )

    return with_txn(lab.db, fn)


def test_operation_in_progress_after_blocked_before_the_power_state(lab):
    """xapi_vm_lifecycle.check_operation_error checks blocked-operations first and refuses an
    operation that cannot run beside the current ones with OTHER_OPERATION_IN_PROGRESS [class,
    object, operation, task], before the template rule. vmctl checks it before the power state
    (README: Differences from XAPI): its records already show a long operation's outcome."""
    running(lab, "v", "h1", "blocked-operations:pause=no")
    task = hold(lab, "v", "clean_shutdown")
    lab.fail("OPERATION_BLOCKED", "vm-pause", "vm=v")
    for args in (["vm-suspend", "vm=v"], ["vm-start", "vm=v"]):
        err = lab.fail("OTHER_OPERATION_IN_PROGRESS", *args)
        assert err["params"]["task"] == task and err["params"]["operation"] == "clean_shutdown"
    lab.ok("vm-create", "name-label=t", "memory=1GiB", "is-a-template=true")
    hold(lab, "t", "clone")
    lab.fail("OTHER_OPERATION_IN_PROGRESS", "vm-start", "vm=t")


def test_allowed_operations_while_an_operation_is_in_progress(lab):
    """xapi_vm_lifecycle.update_allowed_operations runs check_operation_error, which refuses what
    cannot run beside current_operations (is_allowed_concurrently): allowed-operations shows
    what a command would accept now. vmctl runs nothing beside a pending task, so a held VM
    allows nothing until the task ends (README: Differences from XAPI)."""
    running(lab, "v")
    task = hold(lab, "v", "clean_shutdown")
    assert lab.get("vm", "v", "current-operations") == "clean_shutdown"
    assert lab.get("vm", "v", "allowed-operations") == ""
    lab.fail("OTHER_OPERATION_IN_PROGRESS", "vm-shutdown", "vm=v", "--force")

    def finish(t):
        t.update("task", task, {"status": "success"})
        t.update("vm", t.resolve_one("vm", "v")["uuid"], {"current-operations": []})

    with_txn(lab.db, finish)
    assert "hard_shutdown" in lab.get("vm", "v", "allowed-operations").split("; ")
    lab.ok("vm-shutdown", "vm=v", "--force")
