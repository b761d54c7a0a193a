"""The power commands on a libvirt pool drive its hosts (vmctl/domains.py, drivers.md §3–§4),
checked with a fake driver that records every call: the command line runs in this process so
the fake can stand in for libvirt (vmctl.drivers keeps one driver object per name)."""

from __future__ import annotations

import sys

import pytest
from cli_helpers import cli

from vmctl import drivers
from vmctl.drivers.base import DriverFault, HostFacts, VolumeState
from vmctl.runner import Options, Runner

GiB = 1024**3


class FakeDriver:
    """Hosts by URI, each a dict of domain name → state; every call recorded in order."""

    name = "libvirt"

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.hosts: dict[str, dict[str, str]] = {}
        self.specs: dict[str, object] = {}
        self.fail: dict[str, str] = {}  # operation -> the message it fails with
        self.during: dict[str, object] = {}  # operation -> called while it runs
        self.compatible = True

    def _act(self, op: str, host, *args) -> dict[str, str]:
        self.calls.append((op, host.name, *args))
        if op in self.during:
            self.during[op]()
        if op in self.fail:
            raise DriverFault(
                self.fail[op], code="VM_SHUTDOWN_TIMEOUT" if op == "domain_shutdown" else "DRIVER_ERROR"
            )
        return self.hosts.setdefault(host.uri, {})

    def changes(self) -> list[tuple]:
        """The calls that change a host (not the reads)."""
        return [c for c in self.calls if c[0] not in ("probe", "cpu_compatible", "switch_rows")]

    def switch_rows(self, host) -> dict:  # no bridges (tests/test_ovs_real.py has real ones)
        self.calls.append(("switch_rows", host.name))
        return {}

    def probe(self, host) -> HostFacts:
        self.calls.append(("probe", host.name))
        return HostFacts("GenuineIntel", "Broadwell", 6, ("sse2", "vmx"), 8, 32 * GiB, "9.0.0", "<cpu/>")

    def cpu_compatible(self, host, cpu_xml: str) -> bool:
        self.calls.append(("cpu_compatible", host.name))
        return self.compatible

    def domain_start(self, host, dom, paused=False):
        self._act("domain_start", host, dom.uuid, paused)[dom.uuid] = "paused" if paused else "running"
        self.specs[dom.uuid] = dom

    def domain_shutdown(self, host, uuid, timeout):
        self._act("domain_shutdown", host, uuid, timeout).pop(uuid, None)

    def domain_destroy(self, host, uuid):
        self._act("domain_destroy", host, uuid).pop(uuid, None)

    def domain_undefine(self, host, uuid):
        self._act("domain_undefine", host, uuid).pop(uuid, None)

    def domain_reboot(self, host, uuid, force=False):
        self._act("domain_reboot", host, uuid, force)[uuid] = "running"

    def domain_pause(self, host, uuid):
        self._act("domain_pause", host, uuid)[uuid] = "paused"

    def domain_unpause(self, host, uuid):
        self._act("domain_unpause", host, uuid)[uuid] = "running"

    def domain_save(self, host, uuid, image):
        self._act("domain_save", host, uuid, image.uuid).pop(uuid, None)

    def domain_restore(self, host, dom, image, paused=False):
        self._act("domain_restore", host, dom.uuid, image.uuid, paused)[dom.uuid] = (
            "paused" if paused else "running"
        )

    def domains(self, host):
        return dict(self.hosts.get(host.uri, {}))

    def __getattr__(self, op: str):
        """Storage and the rest: recorded, answered with an empty volume where one is asked."""

        def call(host, *args, **kw):
            self.calls.append((op, host.name))
            return VolumeState(0, 0) if op.startswith("volume") else None

        return call


@pytest.fixture
def fake(monkeypatch):
    f = FakeDriver()
    monkeypatch.setitem(drivers._drivers, "libvirt", f)
    return f


def vmctl(db, *args: str) -> tuple[int, str, str]:
    """The command line in this process (the fake stands in for libvirt only here)."""
    p = cli(db, *args)
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stdout, p.stderr


def ok(db, *args: str) -> str:
    rc, out, err = vmctl(db, *args)
    assert rc == 0, err
    return out.strip()


def row(db, cls: str, uuid: str) -> dict:
    return Runner(Options(db=str(db)), "test").transaction(lambda t: t.get(cls, uuid), write=False)


@pytest.fixture
def pool(tmp_path, fake):
    """A libvirt pool of two hosts (h1, h2), a network, and a halted VM without disks."""
    db = tmp_path / "inv.db"
    ok(db, "pool-create", "name-label=lp", "driver=libvirt")
    for i in (1, 2):
        ok(db, "host-add", f"name-label=h{i}", f"address=10.0.0.{i}", "pool=lp", f"driver-uri=test:///h{i}")
    ok(db, "vm-create", "name-label=v1", "memory=256MiB", "vcpus=2")
    fake.calls.clear()
    return db


def vm(db, name: str = "v1") -> dict:
    uuid = ok(db, "vm-list", f"name-label={name}", "--minimal")
    return row(db, "vm", uuid)


def host_uri(db, host_uuid: str) -> str:
    return row(db, "host", host_uuid)["driver-uri"]


def test_vm_start_starts_exactly_one_domain_on_the_host_the_engine_chose(pool, fake):
    ok(pool, "vm-start", "vm=v1")
    v = vm(pool)
    assert v["power-state"] == "running"
    chosen = row(pool, "host", v["resident-on"])["name-label"]
    assert fake.changes() == [("domain_start", chosen, v["uuid"], False)]
    assert fake.hosts[host_uri(pool, v["resident-on"])] == {v["uuid"]: "running"}
    spec = fake.specs[v["uuid"]]
    assert (spec.title, spec.memory, spec.current_memory, spec.vcpus) == (
        "v1",
        256 * 1024**2,
        256 * 1024**2,
        2,
    )


def test_the_domain_carries_disks_in_device_order_and_nics_on_their_bridges(pool, fake):
    v = vm(pool)["uuid"]
    sr = ok(
        pool,
        "sr-create",
        "name-label=s1",
        "type=ext",
        "host=h1",
        "physical-size=10GiB",
        "device-config:path=/srv/s1",
    )
    d0 = ok(pool, "vdi-create", f"sr-uuid={sr}", "name-label=root", "virtual-size=1GiB")
    d1 = ok(
        pool, "vdi-create", f"sr-uuid={sr}", "name-label=data", "virtual-size=2GiB", "provisioning=thick-lazy"
    )
    ok(pool, "vbd-create", f"vm-uuid={v}", f"vdi-uuid={d1}", "device=2")
    ok(pool, "vbd-create", f"vm-uuid={v}", f"vdi-uuid={d0}", "device=0")
    ok(pool, "vbd-create", f"vm-uuid={v}", "device=3", "type=cd")  # an empty CD drive: nothing to attach
    net = ok(pool, "network-create", "name-label=n1", "bridge=br-n1")
    ok(pool, "vif-create", f"vm-uuid={v}", f"network-uuid={net}", "device=0", "mac=02:00:00:00:00:07")
    ok(pool, "vm-param-set", f"uuid={v}", "other-config:emulation=tcg")
    fake.calls.clear()
    ok(pool, "vm-start", "vm=v1")
    spec = fake.specs[v]
    assert [
        (d.device, d.volume.uuid, d.volume.format, d.volume.sr.uuid, d.volume.sr.path) for d in spec.disks
    ] == [
        (0, d0, "qcow2", sr, "/srv/s1"),
        (2, d1, "raw", sr, "/srv/s1"),
    ]
    assert [(n.mac, n.bridge, n.openvswitch) for n in spec.nics] == [("02:00:00:00:00:07", "br-n1", True)]
    assert spec.emulated is True
    assert fake.changes()[0][1] == "h1"  # the local SR's host: the only one that sees the disks


def test_a_vm_with_a_kernel_boots_from_it(pool, fake):
    ok(
        pool,
        "vm-param-set",
        "uuid=v1",
        "other-config:kernel=/var/cache/g/vmlinuz",
        "other-config:initrd=/var/cache/g/initrd.img",
        "other-config:kernel-args=console=ttyS0 dirty=32",
    )
    ok(pool, "vm-start", "vm=v1")
    spec = fake.specs[vm(pool)["uuid"]]
    assert (spec.kernel, spec.initrd, spec.kernel_args) == (
        "/var/cache/g/vmlinuz",
        "/var/cache/g/initrd.img",
        "console=ttyS0 dirty=32",
    )


def test_a_vm_without_a_kernel_boots_its_firmware(pool, fake):
    ok(pool, "vm-start", "vm=v1")
    spec = fake.specs[vm(pool)["uuid"]]
    assert (spec.kernel, spec.initrd, spec.kernel_args) == ("", "", "")


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        (["other-config:kernel=vmlinuz"], "kernel"),
        (["other-config:kernel=/boot/vmlinuz", "other-config:initrd=initrd.img"], "initrd"),
        (["other-config:initrd=/boot/initrd.img"], "initrd"),
        (["other-config:kernel-args=console=ttyS0"], "kernel-args"),
    ],
)
def test_a_kernel_boot_that_cannot_work_is_refused_and_nothing_starts(pool, fake, settings, key):
    ok(pool, "vm-param-set", "uuid=v1", *settings)
    rc, out, err = vmctl(pool, "vm-start", "vm=v1")
    assert (rc, out) == (1, "")
    assert err.startswith(f"vmctl: INVALID_VALUE: other-config:{key} ")
    assert fake.changes() == []
    assert vm(pool)["power-state"] == "halted"


def test_a_failing_start_leaves_the_vm_halted_and_nothing_defined(pool, fake):
    fake.fail["domain_start"] = "internal error: process exited while connecting to monitor"
    rc, out, err = vmctl(pool, "vm-start", "vm=v1")
    assert rc == 1 and out == ""
    assert err.startswith("vmctl: DRIVER_ERROR: start VM v1 failed on h")
    assert "process exited while connecting to monitor" in err.splitlines()[0]
    v = vm(pool)
    assert (v["power-state"], v["resident-on"], v["domid"]) == ("halted", "", -1)
    assert all(doms == {} for doms in fake.hosts.values())


def test_a_later_failure_in_the_same_run_destroys_the_domain_just_started(pool, fake):
    ok(pool, "vm-create", "name-label=v2", "memory=256MiB")
    fake.fail["domain_pause"] = "cannot pause"
    rc, _, err = vmctl(
        pool, "vm-start", "vm=v1", "on=h1", "--", "vm-start", "vm=v2", "on=h1", "--", "vm-pause", "vm=v2"
    )
    assert rc == 1 and "DRIVER_ERROR: pause VM v2 failed on h1: cannot pause" in err
    assert fake.hosts["test:///h1"] == {}
    assert [c[0] for c in fake.changes()] == [
        "domain_start",
        "domain_start",
        "domain_pause",
        "domain_destroy",
        "domain_destroy",
    ]
    assert vm(pool, "v1")["power-state"] == vm(pool, "v2")["power-state"] == "halted"


@pytest.mark.parametrize("flag", ["--dry-run", "--explain"])
def test_dry_run_and_explain_act_on_no_host(pool, fake, flag):
    vmctl(pool, flag, "vm-start", "vm=v1")
    assert fake.changes() == []
    assert vm(pool)["power-state"] == "halted"
    ok(pool, "vm-start", "vm=v1")
    fake.calls.clear()
    for cmd in (
        ["vm-shutdown", "vm=v1"],
        ["vm-shutdown", "vm=v1", "--force"],
        ["vm-pause", "vm=v1"],
        ["vm-reboot", "vm=v1"],
    ):
        vmctl(pool, flag, *cmd)
    assert fake.changes() == []
    assert vm(pool)["power-state"] == "running"


def test_every_vm_of_a_run_of_starts_is_started(pool, fake):
    for n in ("v2", "v3"):
        ok(pool, "vm-create", f"name-label={n}", "memory=256MiB")
    ok(pool, "vm-start", "vm=v1", "--", "vm-start", "vm=v2", "--", "vm-start", "vm=v3")
    started = {c[2]: c[1] for c in fake.changes() if c[0] == "domain_start"}
    for n in ("v1", "v2", "v3"):
        v = vm(pool, n)
        assert started[v["uuid"]] == row(pool, "host", v["resident-on"])["name-label"]
    assert len(fake.changes()) == 3


def test_a_clean_shutdown_waits_for_the_guest_under_a_pending_task(pool, fake):
    ok(pool, "vm-start", "vm=v1")
    v = vm(pool)["uuid"]
    seen = {}

    def meanwhile():
        # the lock is released: another reader sees the VM held by a pending task
        r = Runner(Options(db=str(pool)), "test")
        seen["ops"] = r.transaction(lambda t: t.get("vm", v)["current-operations"], write=False)
        seen["tasks"] = r.transaction(lambda t: [x["status"] for x in t.all("task")], write=False)
        rc, _, err = vmctl(pool, "vm-pause", "vm=v1")
        seen["other"] = err.split(":")[1].strip() if rc else "allowed"

    fake.during["domain_shutdown"] = meanwhile
    fake.calls.clear()
    ok(pool, "vm-shutdown", "vm=v1", "timeout=7s")
    assert seen == {"ops": ["clean_shutdown"], "tasks": ["pending"], "other": "OTHER_OPERATION_IN_PROGRESS"}
    assert fake.changes() == [("domain_shutdown", fake.changes()[0][1], v, 7.0)]
    after = vm(pool)
    assert (after["power-state"], after["current-operations"]) == ("halted", [])
    tasks = Runner(Options(db=str(pool)), "test").transaction(lambda t: t.all("task"), write=False)
    assert [t["status"] for t in tasks] == ["success"]


def test_a_guest_that_does_not_shut_down_keeps_running_and_says_use_force(pool, fake):
    ok(pool, "vm-start", "vm=v1")
    fake.fail["domain_shutdown"] = (
        "the guest did not shut down within 1 s; vm-shutdown --force halts it at once"
    )
    rc, out, err = vmctl(pool, "vm-shutdown", "vm=v1", "timeout=1")
    assert rc == 1 and out == ""
    assert err.startswith("vmctl: VM_SHUTDOWN_TIMEOUT: ")
    assert "--force" in err.splitlines()[0]
    v = vm(pool)
    assert (v["power-state"], v["current-operations"]) == ("running", [])
    assert list(fake.domains(drivers.host_target(row(pool, "host", v["resident-on"])))) == [v["uuid"]]


def test_shutdown_timeout_must_be_positive(pool, fake):
    ok(pool, "vm-start", "vm=v1")
    rc, _, err = vmctl(pool, "vm-shutdown", "vm=v1", "timeout=0")
    assert rc == 1 and err.startswith("vmctl: INVALID_VALUE:")


def test_force_shutdown_destroys_at_once_without_a_task(pool, fake):
    ok(pool, "vm-start", "vm=v1", "on=h2")
    fake.calls.clear()
    ok(pool, "vm-shutdown", "vm=v1", "--force")
    assert fake.changes() == [("domain_destroy", "h2", vm(pool)["uuid"])]
    assert vm(pool)["power-state"] == "halted"
    assert Runner(Options(db=str(pool)), "test").transaction(lambda t: t.all("task"), write=False) == []


def test_pause_unpause_and_reboot_act_on_the_vms_host(pool, fake):
    ok(pool, "vm-start", "vm=v1", "on=h1")
    u = vm(pool)["uuid"]
    fake.calls.clear()
    ok(pool, "vm-pause", "vm=v1")
    ok(pool, "vm-reboot", "vm=v1", "--force")
    ok(pool, "vm-pause", "vm=v1")
    ok(pool, "vm-unpause", "vm=v1")
    ok(pool, "vm-reboot", "vm=v1")
    assert fake.changes() == [
        ("domain_pause", "h1", u),
        ("domain_reboot", "h1", u, True),
        ("domain_pause", "h1", u),
        ("domain_unpause", "h1", u),
        ("domain_reboot", "h1", u, False),
    ]


def test_suspend_saves_into_the_suspend_vdi_and_resume_restores_on_the_chosen_host(pool, fake):
    sr = ok(
        pool,
        "sr-create",
        "name-label=shared",
        "type=nfs",
        "physical-size=100GiB",
        "device-config:server=nas",
        "device-config:serverpath=/vms",
    )
    ok(pool, "pool-param-set", f"uuid={ok(pool, 'pool-list', '--minimal')}", f"default-sr={sr}")
    ok(pool, "vm-start", "vm=v1", "on=h1")
    u = vm(pool)["uuid"]
    fake.calls.clear()
    ok(pool, "vm-suspend", "vm=v1")
    image = vm(pool)["suspend-vdi"]
    assert image and [c for c in fake.changes() if c[0].startswith("domain")] == [
        ("domain_save", "h1", u, image)
    ]
    fake.calls.clear()
    ok(pool, "vm-resume", "vm=v1", "on=h2", "--paused")
    assert [c for c in fake.changes() if c[0].startswith("domain")] == [
        ("domain_restore", "h2", u, image, True)
    ]
    assert fake.hosts["test:///h2"] == {u: "paused"}
    assert vm(pool)["power-state"] == "paused"


def test_uninstall_of_a_running_vm_destroys_its_domain(pool, fake):
    ok(pool, "vm-start", "vm=v1", "on=h1")
    u = vm(pool)["uuid"]
    fake.calls.clear()
    ok(pool, "vm-uninstall", "vm=v1", "--force")
    assert [c for c in fake.changes() if c[0].startswith("domain")] == [("domain_destroy", "h1", u)]
    assert fake.hosts["test:///h1"] == {}


def test_reset_powerstate_only_repairs_the_record(pool, fake):
    ok(pool, "vm-start", "vm=v1", "on=h1")
    fake.calls.clear()
    ok(pool, "vm-reset-powerstate", "vm=v1", "--force")
    assert fake.changes() == []


def test_a_sim_pool_never_reaches_a_driver(tmp_path, fake):
    db = tmp_path / "sim.db"
    ok(db, "pool-create", "name-label=p")
    ok(db, "host-add", "name-label=h1", "address=10.1.0.1", "cpu-count=4", "memory-total=8GiB", "pool=p")
    ok(db, "vm-create", "name-label=v1", "memory=256MiB")
    for cmd in (
        ["vm-start", "vm=v1"],
        ["vm-pause", "vm=v1"],
        ["vm-unpause", "vm=v1"],
        ["vm-shutdown", "vm=v1"],
    ):
        ok(db, *cmd)
    assert fake.calls == []


# --- CPU compatibility on a libvirt pool (drivers.md §2) ---------------------------------------------
def test_a_host_whose_cpu_cannot_run_the_masters_is_refused(pool, fake):
    fake.compatible = False
    rc, _, err = vmctl(
        pool, "host-add", "name-label=h3", "address=10.0.0.3", "pool=lp", "driver-uri=test:///h3"
    )
    assert rc == 1
    assert err.startswith("vmctl: HOSTS_NOT_HOMOGENEOUS:")
    assert "cannot run the pool master's CPU (Broadwell)" in err
    assert ("cpu_compatible", "h3") in fake.calls and (
        "probe",
        "h1",
    ) in fake.calls  # live, against the master
    assert "h3" not in ok(pool, "host-list", "params=name-label", "--minimal")


def test_a_forced_incompatible_host_takes_no_resumed_or_migrating_vm(pool, fake):
    fake.compatible = False
    h3 = ok(
        pool, "host-add", "name-label=h3", "address=10.0.0.3", "pool=lp", "driver-uri=test:///h3", "--force"
    )
    assert row(pool, "host", h3)["other-config"] == {"cpu-compatible": "false"}
    sr = ok(
        pool,
        "sr-create",
        "name-label=shared",
        "type=nfs",
        "physical-size=100GiB",
        "device-config:server=nas",
        "device-config:serverpath=/vms",
    )
    ok(pool, "pool-param-set", f"uuid={ok(pool, 'pool-list', '--minimal')}", f"default-sr={sr}")
    ok(pool, "vm-start", "vm=v1", "on=h3")  # a cold boot may go anywhere
    ok(pool, "vm-suspend", "vm=v1")
    rc, _, err = vmctl(pool, "vm-resume", "vm=v1", "on=h3")
    assert rc == 1 and err.startswith("vmctl: VM_INCOMPATIBLE_WITH_THIS_HOST:")
    assert "the host cannot run the pool master's CPU" in err
    ok(pool, "vm-resume", "vm=v1", "on=h1")  # a compatible host takes it


def test_a_compatible_host_joins_with_no_verdict_recorded(pool, fake):
    h3 = ok(pool, "host-add", "name-label=h3", "address=10.0.0.3", "pool=lp", "driver-uri=test:///h3")
    assert row(pool, "host", h3)["other-config"] == {}
    assert ("cpu_compatible", "h3") in fake.calls


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q", "-n", "0"]))
