"""task-cancel and --async where no task runs (the tasks themselves are real hosts' long
operations: tests/test_daemon_tasks_lab.py)."""

from __future__ import annotations

from cli_helpers import cli, with_txn


def _task(db, status: str, **other) -> str:
    return with_txn(
        db,
        lambda t: t.insert(
            "task", {"name-label": "vmctl vdi-copy", "status": status, "other-config": {"pid": "1", **other}}
        ),
    )


def test_task_cancel_refuses_what_it_cannot_cancel(tmp_path):
    db = tmp_path / "inv.db"
    cli(db, "pool-create", "name-label=p")
    done = _task(db, "success", node="here")
    r = cli(db, "task-cancel", f"uuid={done}")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("vmctl: OPERATION_NOT_ALLOWED: The task is not pending: it ended (success)")
    elsewhere = _task(db, "pending", node="another-machine")
    r = cli(db, "task-cancel", f"uuid={elsewhere}")
    assert r.returncode == 1 and "No vmctl process of this machine carries the task out" in r.stderr
    assert "  node: another-machine\n" in r.stderr
    assert cli(db, "--dry-run", "task-cancel", f"uuid={elsewhere}").returncode == 0
    r = cli(db, "task-cancel", "uuid=00000000-0000-0000-0000-000000000000")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: UUID_INVALID:")


def test_async_needs_the_manager(tmp_path):
    r = cli(tmp_path / "inv.db", "--async", "pool-create", "name-label=p")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("vmctl: OPERATION_NOT_ALLOWED: --async needs the inventory's manager")
    assert not (tmp_path / "inv.db").exists()
