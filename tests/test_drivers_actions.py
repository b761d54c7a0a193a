"""The driver action queue (vmctl/drivers/__init__.py, drivers.md §4): short actions run just
before commit and are undone when anything fails; long ones run with the lock released under a
pending task; a dry run never acts. The actions here are plain functions recording what they
did, so the rules are tested without a hypervisor."""

from __future__ import annotations

import threading

import pytest

from vmctl import drivers
from vmctl.errors import VmctlError
from vmctl.runner import Options, Runner


@pytest.fixture
def world(tmp_path):
    """A runner on a fresh inventory with one VM, and a log of what happened on 'the host'."""
    db = str(tmp_path / "inv.db")
    runner = Runner(Options(db=db, yes=True), "vmctl test")
    vm = runner.transaction(lambda t: t.insert("vm", {"name-label": "v1", "pool": t.insert("pool", {})}))
    return runner, vm, []


def act(log, what, fail=False, long=False, holds=(), then=None):
    def do():
        if fail:
            raise drivers.DriverFault(f"{what}: no space left on device")
        log.append(("do", what))
        return what

    return drivers.Action(
        what=what,
        host="h1",
        do=do,
        undo=lambda: log.append(("undo", what)),
        long=long,
        holds=[drivers.Hold("vm", u, "clean_shutdown") for u in holds],
        then=then,
    )


def rename(vm, name):
    return lambda t: t.update("vm", vm, {"name-label": name})


def name_of(runner, vm):
    return runner.transaction(lambda t: t.get("vm", vm)["name-label"], write=False)


def test_short_actions_run_in_order_and_then_records_the_result(world):
    runner, vm, log = world

    def body(t):
        rename(vm, "v2")(t)
        drivers.queue(t, act(log, "create volume"))
        drivers.queue(
            t, act(log, "start domain", then=lambda t2, r: t2.update("vm", vm, {"name-description": r}))
        )

    runner.transaction(body)
    assert log == [("do", "create volume"), ("do", "start domain")]
    assert name_of(runner, vm) == "v2"
    desc = runner.transaction(lambda t: t.get("vm", vm)["name-description"], write=False)
    assert desc == "start domain"


def test_a_failing_action_undoes_the_earlier_ones_and_changes_no_record(world):
    runner, vm, log = world

    def body(t):
        rename(vm, "v2")(t)
        drivers.queue(t, act(log, "create volume"))
        drivers.queue(t, act(log, "start domain", fail=True))

    with pytest.raises(VmctlError) as e:
        runner.transaction(body)
    assert e.value.code == "DRIVER_ERROR"
    assert "start domain failed on h1: start domain: no space left on device" in e.value.message
    assert log == [("do", "create volume"), ("undo", "create volume")]
    assert name_of(runner, vm) == "v1"


def test_a_dry_run_never_acts(world, tmp_path):
    runner, vm, log = world
    dry = Runner(Options(db=runner.opts.db, dry_run=True), "vmctl test")

    def body(t):
        rename(vm, "v2")(t)
        drivers.queue(t, act(log, "create volume"))

    dry.transaction(body)
    assert log == []
    assert name_of(runner, vm) == "v1"


def test_a_check_failing_after_the_queue_acts_on_nothing(world):
    runner, vm, log = world

    def body(t):
        drivers.queue(t, act(log, "create volume"))
        raise VmctlError("SR_FULL")

    with pytest.raises(VmctlError):
        runner.transaction(body)
    assert log == []


def test_long_actions_run_under_a_pending_task_that_holds_the_vm(world):
    runner, vm, log = world
    seen = {}

    def slow_do():
        # meanwhile, with the lock released, the VM is busy to every other writer
        other = Runner(Options(db=runner.opts.db, timeout=2), "vmctl other")
        with pytest.raises(VmctlError) as e:
            other.transaction(rename(vm, "stolen"))
        seen["code"] = e.value.code
        seen["ops"] = other.transaction(lambda t: t.get("vm", vm)["current-operations"], write=False)
        seen["task"] = other.transaction(lambda t: [x["status"] for x in t.all("task")], write=False)
        log.append(("do", "shutdown"))
        return 7

    def body(t):
        rename(vm, "v2")(t)
        drivers.queue(
            t,
            drivers.Action(
                "shut down v2",
                "h1",
                slow_do,
                long=True,
                holds=[drivers.Hold("vm", vm, "clean_shutdown")],
                then=lambda t2, r: t2.update("vm", vm, {"name-description": f"took {r}"}),
            ),
        )

    runner.transaction(body)
    assert seen == {"code": "OTHER_OPERATION_IN_PROGRESS", "ops": ["clean_shutdown"], "task": ["pending"]}
    row = runner.transaction(lambda t: t.get("vm", vm), write=False)
    assert (row["name-label"], row["name-description"], row["current-operations"]) == ("v2", "took 7", [])
    tasks = runner.transaction(lambda t: t.all("task"), write=False)
    assert [(x["status"], x["objects"]) for x in tasks] == [("success", [f"vm:{vm}"])]
    # the decision and the closing are two journal entries
    journal = runner.transaction(lambda t: t.journal_head()[0], write=False)
    assert journal == 3


def test_a_failing_long_action_restores_the_records_and_fails_the_task(world):
    runner, vm, log = world

    def body(t):
        rename(vm, "v2")(t)
        t.insert("vdi", {"name-label": "copy", "pool": t.get("vm", vm)["pool"]})
        drivers.queue(t, act(log, "copy disk", long=True, holds=[vm]))
        drivers.queue(t, act(log, "start domain", fail=True))

    with pytest.raises(VmctlError) as e:
        runner.transaction(body)
    assert e.value.code == "DRIVER_ERROR"
    assert log == [("do", "copy disk"), ("undo", "copy disk")]
    row = runner.transaction(lambda t: t.get("vm", vm), write=False)
    assert (row["name-label"], row["current-operations"]) == ("v1", [])
    assert runner.transaction(lambda t: t.all("vdi"), write=False) == []
    tasks = runner.transaction(lambda t: t.all("task"), write=False)
    assert [(x["status"], x["error-code"]) for x in tasks] == [("failure", "DRIVER_ERROR")]


def test_ctrl_c_during_a_long_action_cancels_the_task(world):
    runner, vm, log = world

    def interrupted():
        raise KeyboardInterrupt

    def body(t):
        rename(vm, "v2")(t)
        drivers.queue(
            t,
            drivers.Action("copy disk", "h1", interrupted, long=True, holds=[drivers.Hold("vm", vm, "copy")]),
        )

    with pytest.raises(KeyboardInterrupt):
        runner.transaction(body)
    assert name_of(runner, vm) == "v1"
    tasks = runner.transaction(lambda t: t.all("task"), write=False)
    assert [x["status"] for x in tasks] == ["cancelled"]


def test_vm_operations_on_a_held_vm_fail_before_the_power_state_check(world):
    """model.md §0 check (5) comes before (6): a held halted VM refuses vm-shutdown with
    OTHER_OPERATION_IN_PROGRESS, not VM_BAD_POWER_STATE."""
    runner, vm, log = world
    barrier = threading.Event()
    from vmctl.vms import check_vm_operation

    def do():
        other = Runner(Options(db=runner.opts.db, timeout=2), "vmctl other")
        with pytest.raises(VmctlError) as e:
            other.transaction(
                lambda t: check_vm_operation(t, t.get("vm", vm), "clean_shutdown", ("running",))
            )
        barrier.set()
        return e.value.code

    codes = []
    runner.transaction(
        lambda t: drivers.queue(
            t,
            drivers.Action(
                "x",
                "h1",
                do,
                long=True,
                holds=[drivers.Hold("vm", vm, "copy")],
                then=lambda t2, r: codes.append(r),
            ),
        )
    )
    assert barrier.is_set() and codes == ["OTHER_OPERATION_IN_PROGRESS"]


def test_last_actions_run_after_every_other_one_whatever_the_queueing_order(world):
    runner, vm, log = world

    def body(t):
        drivers.queue(t, act(log, "delete volume a"), last=True)
        drivers.queue(t, act(log, "create volume b"))
        drivers.queue(t, act(log, "delete volume c"), last=True)
        drivers.queue(t, act(log, "start domain"))

    runner.transaction(body)
    assert [w for _, w in log] == ["create volume b", "start domain", "delete volume a", "delete volume c"]


def test_a_failure_before_the_last_actions_runs_none_of_them(world):
    runner, vm, log = world

    def body(t):
        drivers.queue(t, act(log, "delete volume a"), last=True)
        drivers.queue(t, act(log, "create volume b"))
        drivers.queue(t, act(log, "start domain", fail=True))

    with pytest.raises(VmctlError):
        runner.transaction(body)
    assert log == [("do", "create volume b"), ("undo", "create volume b")]
