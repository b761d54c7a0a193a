"""Drivers: how a decided change reaches the hosts (drivers.md §3–§4).

A pool's `driver` says who acts on its hosts: `sim` (the default: the inventory is the world,
nothing else happens) or `libvirt` (real hosts). The service layer queues what must happen on a
host as an `Action` (base.py) while the transaction decides; the queue is carried out when the
transaction has passed every check, just before it commits:

* **short actions** (create a volume, start a domain) run under the inventory lock; if one
  fails, the ones already done are undone in reverse order and the transaction rolls back;
* **long actions** (a copy, a shutdown that waits for the guest) run without the lock: the
  decision commits first together with a pending `task` holding the objects (their
  `current-operations` name the operation, and other commands fail
  `OTHER_OPERATION_IN_PROGRESS`); the actions run; a short closing transaction then finishes the
  task, or, on failure or Ctrl-C, undoes the actions and restores the records as they were,
  both journalled;
* a dry run (and `--explain`) queues nothing real: the queue is dropped unread;
* what cannot be undone runs after what can: `queue(..., last=True)` (deleting a volume) after
  every other action, and a `final` action (a finished live migration, whose outcome must be
  committed whatever happens) after those too, so that nothing at all comes after it;
* **steps**: work that must commit piece by piece (the moves of an evacuation: a finished
  migration stays done whatever comes next) queues further transactions. Each `Step` runs once
  the transaction before it committed and its long actions ended, with the same hooks, queue
  and closing as any transaction; a failing step ends the invocation, the steps before it stay
  committed and the ones after it are not attempted.

Reads that change nothing (probing a host's hardware) are done at once through `driver_for`.
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

from vmctl.drivers.base import Action, Driver, DriverFault, Hold, HostTarget, cancel_requested
from vmctl.errors import VmctlError

__all__ = [
    "Action",
    "DriverFault",
    "Hold",
    "HostTarget",
    "cancel_requested",
    "driver_for",
    "host_target",
    "queue",
    "real",
]

_drivers: dict[str, Driver] = {}  # one per process: it keeps its connections, once per host

# --- tasks carried out by this process ---------------------------------------------------------------
# task uuid -> the thread carrying it out (task-cancel interrupts it: vmctl/tasks.py)
RUNNING: dict[str, int] = {}
# what a task records about who carries it out, besides pid and node (the manager: its socket)
RUNNER: dict[str, str] = {}
# set by a process that outlives its commands (the manager): carry a task out in the background,
# so that `--async` returns once the decision is committed
BACKGROUND: Callable[[Callable[[], None]], None] | None = None


def driver_named(name: str) -> Driver | None:
    """The driver object for a pool's `driver` value; None for sim."""
    if name == "sim":
        return None
    d = _drivers.get(name)
    if d is None:
        if name != "libvirt":
            raise VmctlError("INVALID_VALUE", params=[("name", "driver"), ("value", name)])
        from vmctl.drivers.libvirt import LibvirtDriver

        if not _drivers:
            # Close the connections while libvirt's module is still whole: left to the interpreter's
            # shutdown, virConnect.__del__ runs after its globals are gone and prints a traceback.
            atexit.register(close_all)
        d = _drivers[name] = LibvirtDriver()
    return d


def close_all() -> None:
    """Close every driver's connections (at exit, and wherever a process must let go of its hosts)."""
    for d in _drivers.values():
        d.close()
    _drivers.clear()


def driver_for(txn, pool_uuid: str) -> Driver | None:
    """The driver acting on a pool's hosts, or None when the pool is simulated."""
    pool = txn.get("pool", pool_uuid) if pool_uuid else None
    return driver_named(pool["driver"]) if pool else None


def real(txn, pool_uuid: str) -> bool:
    pool = txn.get("pool", pool_uuid) if pool_uuid else None
    return bool(pool) and pool["driver"] != "sim"


def default_uri(address: str) -> str:
    return f"qemu+ssh://root@{_bracketed(address)}/system"


def default_ovsdb(address: str) -> str:
    return f"tcp:{_bracketed(address)}:6640"


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def host_target(host: dict) -> HostTarget:
    address = host["address"]
    return HostTarget(
        uuid=host["uuid"],
        name=host["name-label"],
        address=address,
        uri=host["driver-uri"] or default_uri(address),
        ovsdb=host["ovsdb"] or default_ovsdb(address),
    )


# --- the queue -------------------------------------------------------------------------------------
@dataclass
class _Queue:
    actions: list[Action] = field(default_factory=list)
    last: list[Action] = field(default_factory=list)  # destroys: after everything that can fail
    done: list[tuple[Action, object]] = field(default_factory=list)
    task: str = ""  # the pending task of a long run, once the decision committed
    steps: list[Step] = field(default_factory=list)  # further transactions, once this one committed
    records_only: int = 0  # > 0 while the records are made to follow the hosts (host-sync --fix)
    followed: bool = False  # records were made to follow the hosts in this transaction
    n_first: int = 0  # how many actions at the head of `actions` were queued `first`


def _queue(txn) -> _Queue:
    q = txn.cache.get(_Queue)
    if q is None:
        q = txn.cache[_Queue] = _Queue()
        txn.on_abort.append(lambda: undo_done(q))
    return q


def queue(txn, action: Action, last: bool = False, first: bool = False) -> None:
    """Queue one change to a host; it happens only if the transaction commits. `last` (what
    cannot be undone, such as deleting a volume) runs after every other action, in its own
    queueing order, so that nothing that can still fail comes after it. `first` runs before every
    action not queued `first` (a host's bridges, before the domains that plug into them)."""
    q = _queue(txn)
    if q.records_only:
        return
    if first:
        q.actions.insert(q.n_first, action)
        q.n_first += 1
    else:
        (q.last if last else q.actions).append(action)


@contextmanager
def records_only(txn):
    """Inside, the service layer changes records without acting on any host: the records are
    being made to describe what the hosts already are (host-sync --fix)."""
    q = _queue(txn)
    q.records_only += 1
    q.followed = True
    try:
        yield
    finally:
        q.records_only -= 1


def pending(txn) -> _Queue | None:
    return txn.cache.get(_Queue)


def has_final(txn) -> bool:
    """Whether the transaction already queued an action that cannot be undone."""
    q = txn.cache.get(_Queue)
    return q is not None and any(a.final for a in q.actions)


@dataclass
class Step:
    """A further transaction of the invocation (see the module docstring): `body(txn)` decides and
    queues as a command does, on the inventory as it is when the step runs. `what` names the step
    in errors ("move 2 of 3 (VM web from h1 to h2)")."""

    what: str
    body: Callable[[object], None]
    kind: str = "step"  # what the steps are, in errors: "move"
    # consecutive steps of one group (not None) are a wave: each decided in its own transaction,
    # in order, then their long actions run at once, each closed in its own transaction as it ends
    group: object = None


def step(txn, s: Step) -> None:
    """Run `s` in a transaction of its own after this one committed (never on a dry run)."""
    _queue(txn).steps.append(s)


def steps(txn) -> list[Step]:
    q = txn.cache.get(_Queue)
    return list(q.steps) if q is not None else []


def step_failed(e: VmctlError, failed: Step | None, rest: list[Step], done: int | None = None) -> VmctlError:
    """The error of a failed step (`failed`; None: the transaction before the steps): what failed,
    why, and what stays done or was not attempted because of it. `done`: how many steps are done
    (a wave's ran at once: "before it" would not say which); None: every step before it."""
    kind = (failed or (rest[0] if rest else Step("", lambda t: None))).kind
    message = e.message
    params = list(e.params)
    if failed is not None:
        if not message.startswith(failed.what):
            message = f"{failed.what}: {message}"
        message += done_phrase(kind, done)
        params.append(("step", failed.what))
    if rest:
        n = len(rest)
        message += (
            f"; the {n} {kind}{'s' if n > 1 else ''} after it {'were' if n > 1 else 'was'} not attempted"
        )
    err = VmctlError(e.code, message, params)
    err.exit_code = e.exit_code
    return err


def done_phrase(kind: str, done: int | None) -> str:
    """What stays done when a step failed or was interrupted, as the error says it."""
    if done is None:
        return f"; the {kind}s before it are done and committed"
    if done == 0:
        return f"; no {kind} is done"
    return f"; {done} other {kind}{'s are' if done > 1 else ' is'} done and committed"


def perform(txn, dry_run: bool, command: str = "") -> None:
    """The last step before commit (vmctl/hooks.py): carry out the short queue, or, when it holds
    a long action, turn the transaction into the start of a task named after the command."""
    q = txn.cache.get(_Queue)
    if q is None:
        return
    q.actions += q.last
    q.last.clear()
    if not q.actions:
        return
    if dry_run:
        q.actions.clear()
        q.steps.clear()
        return
    q.actions.sort(key=lambda a: a.final)  # stable: the others keep their order
    if any(a.long for a in q.actions):
        q.task = _start_task(txn, q.actions, command)
        return
    for a in q.actions:
        result = run_action(a, q)
        if a.then is not None:
            a.then(txn, result)


def run_action(a: Action, q: _Queue) -> object:
    """Do one action; on failure undo the ones already done and report the failing one."""
    try:
        result = a.do()
    except DriverFault as f:
        undo_done(q)
        raise _fault_error(a, f) from None
    except KeyboardInterrupt:
        undo_done(q)
        raise
    q.done.append((a, result))
    return result


def undo_done(q: _Queue) -> list[str]:
    """Undo what was done, newest first; what cannot be undone is reported, not hidden."""
    problems = []
    while q.done:
        a, _ = q.done.pop()
        if a.undo is None:
            continue
        try:
            a.undo()
        except Exception as e:  # the host keeps it: say so, host-sync will find it
            problems.append(f"could not undo '{a.what}' on {a.host}: {e}")
    for p in problems:
        import sys

        sys.stderr.write(f"vmctl: warning: {p}\n")
    return problems


def _fault_error(a: Action, f: DriverFault) -> VmctlError:
    msg = " ".join(str(f.message).split()) or type(f).__name__
    params: list[tuple[str, object]] = [("action", a.what), ("host", f.host or a.host), ("reason", msg)]
    params += list(f.params.items())
    # whatever the code, the first line says which action failed where, in the host's words
    return VmctlError(f.code, f"{a.what} failed on {f.host or a.host}: {msg}", params)


# --- long runs: decide and mark, act without the lock, close -----------------------------------------
def _start_task(txn, actions: list[Action], command: str) -> str:
    from vmctl.store.txn import now_iso

    holds = [h for a in actions for h in a.holds]
    task = txn.new_uuid()
    txn.own_task = task  # its objects are busy to everyone else, not to this transaction
    txn.insert(
        "task",
        {
            "uuid": task,
            "name-label": command or "vmctl",
            "status": "pending",
            "created": now_iso(),
            "objects": sorted({f"{h.cls}:{h.uuid}" for h in holds}),
            "other-config": {
                "pid": str(os.getpid()),
                "node": socket.gethostname(),
                "actions": "; ".join(f"{a.what} on {a.host}" for a in actions),
                **RUNNER,
            },
        },
    )
    for h in holds:
        row = txn.get(h.cls, h.uuid)
        if row is not None and "current-operations" in row:
            txn.update(
                h.cls, h.uuid, {"current-operations": sorted({*row["current-operations"], h.operation})}
            )
    return task


def finish_long(q: _Queue, decided, close: Callable[[Callable], None]) -> None:
    """After the decision committed: do every queued action without the lock, then close the task
    in one short transaction (`close(body)` runs body(txn) as a transaction). On a failure or
    Ctrl-C (or task-cancel, which interrupts this thread) the actions done are undone and the
    decided records restored."""
    RUNNING[q.task] = threading.get_ident()
    try:
        _carry_out(q, decided, close)
    finally:
        RUNNING.pop(q.task, None)


def _carry_out(q: _Queue, decided, close: Callable[[Callable], None]) -> None:
    try:
        results = act_long(q)
    except BaseException as e:  # a failure, Ctrl-C, or a fault of ours: the records follow the hosts
        close_long(q, decided, close, error=e)
        raise
    close_long(q, decided, close, results)


def act_long(q: _Queue) -> list[tuple[Action, object]]:
    """The acting half of `finish_long`: every queued action in order, without the lock (in a
    worker thread when several long runs go at once: a wave of migrations). On a failure the
    actions done are undone and the failure raised."""
    return [(a, run_action(a, q)) for a in q.actions]


def close_long(
    q: _Queue,
    decided,
    close: Callable[[Callable], None],
    results: list[tuple[Action, object]] | None = None,
    error: BaseException | None = None,
) -> None:
    """The closing half of `finish_long`: with `error`, restore the decided records and close the
    task as failed or cancelled; else record the results and close it as a success."""
    if error is not None:
        with not_interrupted():  # a second Ctrl-C must not leave the records half restored
            close(lambda txn: _revert(txn, q.task, decided, error))
        return

    def succeed(txn):
        txn.own_task = q.task
        for a, result in results or ():
            if a.then is not None:
                a.then(txn, result)
        _close_task(txn, q.task, "success")

    close(succeed)


@contextmanager
def not_interrupted():
    """Ctrl-C ignored inside (in the main thread): what runs there must finish whole."""
    import signal

    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _close_task(txn, task: str, status: str, error: VmctlError | None = None) -> None:
    from vmctl.store.txn import now_iso

    t = txn.get("task", task)
    if t is None:
        return
    for key in t["objects"]:
        cls, uuid = key.split(":", 1)
        row = txn.get(cls, uuid)
        if row is not None and row.get("current-operations"):
            txn.update(cls, uuid, {"current-operations": []})
    values: dict = {
        "status": status,
        "finished": now_iso(),
        "progress": 1.0 if status == "success" else t["progress"],
    }
    if error is not None:
        values["error-code"] = error.code
        values["error-params"] = {k: str(v) for k, v in error.params}
    txn.update("task", task, values)


def _revert(txn, task: str, decided, error: BaseException) -> None:
    """Put back every record the deciding transaction changed (its journal record), then close
    its task as failed or cancelled."""
    txn.own_task = task
    created = [k for k in decided.created if not k.startswith("task:")]
    txn.restore(created, list(decided.destroyed), list(decided.changed), decided.changes)
    err = error if isinstance(error, VmctlError) else None
    _close_task(txn, task, "failure" if err is not None else "cancelled", err)
