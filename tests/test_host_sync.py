"""host-sync / pool-sync (vmctl/sync.py, drivers.md §4) against a fake libvirt driver: the host's
domains and volumes are whatever the test says, so every kind of difference is made on purpose.
The hosts are the truth: --fix moves the records, never the hosts."""

from __future__ import annotations

import os

import pytest

from vmctl import drivers
from vmctl.api import Inventory
from vmctl.drivers.base import DriverFault, HostFacts, VolumeState
from vmctl.errors import VmctlError

GiB = 1024**3


class FakeHost:
    """A libvirt driver whose hosts are dicts: uri -> domains, (uri, sr uuid) -> volumes."""

    name = "libvirt"

    def __init__(self):
        self.domains_on: dict[str, dict[str, str]] = {}
        self.volumes_on: dict[tuple[str, str], dict[str, VolumeState]] = {}
        self.down: set[str] = set()
        self.calls: list[str] = []

    def probe(self, host):
        return HostFacts("GenuineIntel", "Skylake", 6, ("sse4_2", "vmx"), 8, 16 * GiB, "9.0.0")

    def cpu_compatible(self, host, cpu_xml):  # every host here runs the master's CPU
        return True

    def domains(self, host):
        if host.uri in self.down:
            raise DriverFault("unable to connect to server: Connection refused", host=host.name)
        return dict(self.domains_on.get(host.uri, {}))

    def volumes(self, host, sr):
        return dict(self.volumes_on.get((host.uri, sr.uuid), {}))

    def switch_rows(self, host):  # no bridges (tests/test_ovs_real.py has real Open vSwitch ones)
        return {}

    def __getattr__(self, name):  # any acting call: recorded, so a test can prove none happened
        if name.startswith(("domain_", "volume_", "sr_", "switch_")):
            return lambda *a, **k: self.calls.append(name)
        raise AttributeError(name)


@pytest.fixture
def lab(tmp_path, monkeypatch):
    fake = FakeHost()
    monkeypatch.setitem(drivers._drivers, "libvirt", fake)
    inv = Inventory(str(tmp_path / "inv.db"))
    inv.run("pool-create", "name-label=real", "driver=libvirt")
    for i in (1, 2):
        inv.run("host-add", f"name-label=h{i}", f"address=10.0.0.{i}", "pool=real", f"driver-uri=test://h{i}")
    inv.run(
        "sr-create",
        "name-label=local1",
        "type=ext",
        "host=h1",
        "physical-size=100GiB",
        "device-config:path=/srv/sr1",
    )
    inv.run("vm-create", "name-label=v1", "memory=1GiB", "pool=real")
    inv.run("vm-create", "name-label=v2", "memory=1GiB", "pool=real")
    fake.calls.clear()
    return inv, fake


def uuid_of(inv, cls, name):
    return inv.run(f"{cls}-param-get", f"uuid={name}", "param-name=uuid")


def sync(inv, *args):
    from vmctl.cli.grammar import Segment
    from vmctl.runner import Options, Runner, build_chain

    chain = build_chain([Segment(name=args[0], args=list(args[1:]))])
    r = Runner(Options(db=inv.opts.db, yes=True), "vmctl " + " ".join(args)).run(chain)[0]
    return r.text, r.exit_code


def test_agreeing_host_says_one_line(lab):
    inv, fake = lab
    text, code = sync(inv, "host-sync", "host=h1")
    assert (text, code) == ("host-sync: host h1 agrees with the inventory\n", 0)


def test_a_guest_that_stopped_behind_vmctls_back_is_reported_then_fixed(lab):
    inv, fake = lab
    v1 = uuid_of(inv, "vm", "v1")
    inv.run("vm-start", "vm=v1", "on=h1")
    fake.domains_on["test://h1"] = {}  # destroyed with virsh behind vmctl's back
    text, code = sync(inv, "host-sync", "host=h1")
    assert code == 1
    assert text == f"vm {v1}: inventory says running on h1, the host has it halted\n"
    text, code = sync(inv, "host-sync", "host=h1", "--fix")
    assert code == 0 and text.startswith(f"fixed vm {v1}: inventory says running on h1")
    assert text.splitlines()[-1] == "host-sync: host h1 agrees with the inventory now"
    assert inv.run("vm-param-get", "uuid=v1", "param-name=power-state") == "halted"
    assert fake.calls == [c for c in fake.calls if c == "domain_start"]  # the repair acted on nothing


def test_a_guest_started_with_virsh_and_an_unknown_domain(lab):
    inv, fake = lab
    v2 = uuid_of(inv, "vm", "v2")
    stranger = "0b7f3a55-1d5e-4d8e-9a51-6f2f3c0b1a2c"
    fake.domains_on["test://h2"] = {v2: "paused", stranger: "running"}
    text, code = sync(inv, "pool-sync", "--fix")
    assert f"fixed vm {v2}: inventory says halted, the host h2 has it paused: marked it paused on h2" in text
    assert f"domain {stranger}: running on h2, unknown to the inventory (not changed)" in text
    assert code == 0  # what vmctl does not know is listed, not counted as a difference left
    assert inv.run("vm-param-get", "uuid=v2", "param-name=resident-on") == uuid_of(inv, "host", "h2")
    assert fake.calls == []


def test_volumes_missing_resized_and_unknown(lab):
    inv, fake = lab
    sr = uuid_of(inv, "sr", "local1")
    d1 = inv.run("vdi-create", "name-label=d1", "sr-uuid=local1", "virtual-size=1GiB")
    d2 = inv.run("vdi-create", "name-label=d2", "sr-uuid=local1", "virtual-size=1GiB")
    fake.volumes_on[("test://h1", sr)] = {
        f"{d2}.qcow2": VolumeState(2 * GiB, 196608),  # grown with qemu-img behind vmctl's back
        "stray.img": VolumeState(GiB, GiB),
    }
    text, code = sync(inv, "host-sync", "host=h1")
    assert code == 1
    assert f"vdi {d1}: its volume is missing from SR local1 on h1" in text
    assert f"vdi {d2}: inventory says virtual-size {GiB}, the volume has virtual-size {2 * GiB}" in text
    assert "volume stray.img: on SR local1 (h1), unknown to the inventory (not changed)" in text
    sync(inv, "host-sync", "host=h1", "--fix")
    assert inv.run("vdi-list", "sr=local1", "params=name-label") == [{"name-label": "d2"}]
    assert inv.run("vdi-param-get", f"uuid={d2}", "param-name=physical-utilisation") == 196608


def test_unreachable_host_is_marked_not_live(lab):
    inv, fake = lab
    fake.down.add("test://h2")
    text, code = sync(inv, "host-sync", "host=h2", "--fix")
    assert (
        "host " in text
        and "unreachable at test://h2: unable to connect to server: Connection refused" in text
    )
    assert inv.run("host-param-get", "uuid=h2", "param-name=live") is False
    fake.down.clear()
    sync(inv, "host-sync", "host=h2", "--fix")
    assert inv.run("host-param-get", "uuid=h2", "param-name=live") is True


DEAD_PID = 2**22 + 12345  # above pid_max's default: no such process


def leave_task(inv, vm_uuid: str, pid: int = DEAD_PID) -> str:
    """A pending task holding a VM, as a vmctl killed during a clean shutdown leaves it."""
    from vmctl.runner import Options, Runner

    made = []

    def with_task(t):
        t.own_task = t.insert(
            "task",
            {
                "name-label": "vmctl vm-shutdown vm=v1",
                "objects": [f"vm:{vm_uuid}"],
                "other-config": {
                    "pid": str(pid),
                    "node": os.uname().nodename,
                    "actions": "shut down v1 on h1",
                },
            },
        )
        t.update("vm", vm_uuid, {"current-operations": ["clean_shutdown"]})
        made.append(t.own_task)

    Runner(Options(db=inv.opts.db), "test").transaction(with_task)
    return made[0]


def test_a_task_left_by_a_killed_vmctl_is_closed_by_fix(lab):
    inv, fake = lab
    leave_task(inv, uuid_of(inv, "vm", "v1"))
    with pytest.raises(VmctlError) as e:
        inv.run("vm-param-set", "uuid=v1", "name-description=x")
    assert e.value.code == "OTHER_OPERATION_IN_PROGRESS"
    text, code = sync(inv, "pool-sync")
    assert code == 1 and "interrupted (vmctl vm-shutdown vm=v1; pid" in text
    text, code = sync(inv, "pool-sync", "--fix")
    assert code == 0 and "closed it as interrupted" in text
    inv.run("vm-param-set", "uuid=v1", "name-description=x")  # free again
    assert inv.run("vm-param-get", "uuid=v1", "param-name=current-operations") == []


def test_lab_down_closes_the_tasks_a_killed_vmctl_left_on_its_pool_only(lab):
    """`vmctl lab down` after a vmctl was killed mid-operation on the lab: the stale task on the
    lab's VM is closed (else it holds the VM and the pool cannot go), a stale task on another
    pool's VM and a task whose process still runs are left alone."""
    from vmctl.lab.registry import close_interrupted_tasks
    from vmctl.runner import Options, Runner

    inv, fake = lab
    inv.run("pool-create", "name-label=other")
    inv.run("vm-create", "name-label=elsewhere", "memory=1GiB", "pool=other")
    stale = leave_task(inv, uuid_of(inv, "vm", "v1"))
    running = leave_task(inv, uuid_of(inv, "vm", "v2"), pid=os.getpid())
    foreign = leave_task(inv, uuid_of(inv, "vm", "elsewhere"))
    pool = inv.run("pool-param-get", "uuid=real", "param-name=uuid")
    Runner(Options(db=inv.opts.db), "test").transaction(lambda t: close_interrupted_tasks(t, pool))
    status = {
        t: inv.run("task-param-get", f"uuid={t}", "param-name=status") for t in (stale, running, foreign)
    }
    assert status == {stale: "failure", running: "pending", foreign: "pending"}
    assert inv.run("vm-param-get", "uuid=v1", "param-name=current-operations") == []
    assert inv.run("vm-param-get", "uuid=v2", "param-name=current-operations") == ["clean_shutdown"]


def test_a_simulated_pool_has_nothing_to_compare(tmp_path):
    inv = Inventory(str(tmp_path / "sim.db"))
    inv.run("host-add", "name-label=s1", "address=10.1.0.1", "cpu-count=4", "memory-total=8GiB")
    with pytest.raises(VmctlError) as e:
        sync(inv, "host-sync", "host=s1")
    assert e.value.code == "OPERATION_NOT_ALLOWED" and "simulated" in str(e.value.params)


def killed_mid_migration(inv, fake, src: str, dst: str) -> str:
    """v1 started on `src`, then a vm-migrate to `dst` whose vmctl was killed: the records say
    migrating (scheduled on dst, held by a pending task of a dead pid)."""
    v1 = uuid_of(inv, "vm", "v1")
    fake.domains_on.setdefault(f"test://{src}", {})[v1] = "running"
    inv.run("vm-start", "vm=v1", f"on={src}")
    dst_uuid = uuid_of(inv, "host", dst)

    def migrating(t):
        t.own_task = t.insert(
            "task",
            {
                "name-label": f"vmctl vm-migrate vm=v1 host={dst}",
                "objects": [f"vm:{v1}"],
                "other-config": {
                    "pid": str(2**22 + 12345),
                    "node": os.uname().nodename,
                    "actions": "migrate",
                },
            },
        )
        t.update("vm", v1, {"current-operations": ["pool_migrate"], "scheduled-to-be-resident-on": dst_uuid})

    from vmctl.runner import Options, Runner

    Runner(Options(db=inv.opts.db), "test").transaction(migrating)
    fake.calls.clear()
    return v1


@pytest.mark.parametrize("src, dst", [("h1", "h2"), ("h2", "h1")])
def test_a_migration_that_finished_after_vmctl_was_killed(lab, src, dst):
    """The guest ended on the destination: the records follow it there, whichever host is
    compared first, and the task is closed; the source is not asked to halt anything."""
    inv, fake = lab
    v1 = killed_mid_migration(inv, fake, src, dst)
    fake.domains_on[f"test://{dst}"] = {v1: fake.domains_on[f"test://{src}"].pop(v1)}
    text, code = sync(inv, "pool-sync", "--fix")
    assert code == 0, text
    assert inv.run("vm-param-get", "uuid=v1", "param-name=power-state") == "running"
    assert inv.run("vm-param-get", "uuid=v1", "param-name=resident-on") == uuid_of(inv, "host", dst)
    assert inv.run("vm-param-get", "uuid=v1", "param-name=scheduled-to-be-resident-on") == ""
    assert inv.run("vm-param-get", "uuid=v1", "param-name=current-operations") == []
    assert fake.calls == []
    text, code = sync(inv, "pool-sync")
    assert code == 0, text


@pytest.mark.parametrize("compared", ["h1", "h2"])
def test_host_sync_of_either_end_finds_the_guest_of_a_killed_migration(lab, compared):
    """host-sync host=H --fix of one end of the interrupted migration looks at the other end for
    that VM: the guest, gone on to h2, is recorded running there, never halted on the way
    (the journal shows no halt), and the task is closed."""
    inv, fake = lab
    v1 = killed_mid_migration(inv, fake, "h1", "h2")
    fake.domains_on["test://h2"] = {v1: fake.domains_on["test://h1"].pop(v1)}
    text, code = sync(inv, "host-sync", f"host={compared}", "--fix")
    assert code == 0, text
    assert "marked it halted" not in text and "closed it as interrupted" in text
    assert inv.run("vm-param-get", "uuid=v1", "param-name=power-state") == "running"
    assert inv.run("vm-param-get", "uuid=v1", "param-name=resident-on") == uuid_of(inv, "host", "h2")
    assert inv.run("vm-param-get", "uuid=v1", "param-name=scheduled-to-be-resident-on") == ""
    assert fake.calls == []
    for h in ("h1", "h2"):
        text, code = sync(inv, "host-sync", f"host={h}")
        assert code == 0, text


def test_host_sync_of_one_end_says_when_the_other_cannot_be_read(lab):
    inv, fake = lab
    v1 = killed_mid_migration(inv, fake, "h1", "h2")
    fake.domains_on["test://h1"].pop(v1)
    fake.down.add("test://h2")
    text, code = sync(inv, "host-sync", "host=h1")
    assert code == 1 and f"vm {v1}: cannot be looked for on h2: unable to connect to server" in text


def test_a_migration_that_was_aborted_leaves_the_vm_on_its_source(lab):
    inv, fake = lab
    killed_mid_migration(inv, fake, "h1", "h2")
    text, code = sync(inv, "pool-sync", "--fix")
    assert code == 0 and "closed it as interrupted" in text
    assert inv.run("vm-param-get", "uuid=v1", "param-name=resident-on") == uuid_of(inv, "host", "h1")
    assert inv.run("vm-param-get", "uuid=v1", "param-name=scheduled-to-be-resident-on") == ""


def test_a_migration_still_running_is_reported_and_left_alone(lab):
    """vmctl was killed but libvirt goes on migrating: the guest arrives paused on the destination.
    Nothing is repaired and the task stays open until the migration ends."""
    inv, fake = lab
    v1 = killed_mid_migration(inv, fake, "h1", "h2")
    fake.domains_on["test://h2"] = {v1: "migrating"}
    text, code = sync(inv, "pool-sync", "--fix")
    assert code == 1
    assert f"vm {v1}: a live migration is in progress on h2" in text
    assert "its VM is still migrating: not closed" in text
    assert inv.run("vm-param-get", "uuid=v1", "param-name=current-operations") == ["pool_migrate"]
    assert inv.run("vm-param-get", "uuid=v1", "param-name=resident-on") == uuid_of(inv, "host", "h1")
