"""task-cancel (model.md §1.9): tasks are the long operations on real hosts (vmctl/drivers);
task-list and task-param-* are the generic commands."""

from __future__ import annotations

from vmctl.commands.table import Arg, Ctx, command
from vmctl.errors import VmctlError


@command(
    "task-cancel",
    "Cancel a pending task: its operation is interrupted as Ctrl-C would interrupt it, what it "
    "did is undone and the task ends cancelled; waits until it has ended",
    family="task",
    rw=False,
    args=(Arg("uuid", "uuid", True, "the task"),),
)
def task_cancel(ctx: Ctx):
    from vmctl import tasks

    task = ctx.txn.resolve_one("task", ctx.a["uuid"])
    if task["status"] != "pending":
        raise VmctlError(
            "OPERATION_NOT_ALLOWED",
            f"The task is not pending: it ended ({task['status']})",
            [("task", task["uuid"]), ("reason", f"status {task['status']}")],
        )
    if ctx.opts.get("dry_run"):
        return None
    tasks.cancel(task)
    status = tasks.wait_until_ended(lambda: _status(ctx, task["uuid"]), ctx.opts.get("timeout") or 30.0)
    if status == "pending":
        raise VmctlError(
            "OPERATION_NOT_ALLOWED",
            "The task was interrupted but has not ended yet: task-list shows when it has",
            [("task", task["uuid"]), ("reason", "still pending")],
        )
    return None


def _status(ctx: Ctx, uuid: str) -> str:
    """The task's status as committed now (the command's own transaction sees an older state)."""
    from vmctl.store.txn import Store

    store = Store(ctx.opts.get("db"), read_only=True)
    try:
        return store.run(lambda t: (t.get("task", uuid) or {"status": "gone"})["status"], False)[0]
    finally:
        store.dispose()
