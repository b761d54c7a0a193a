"""Placement (engine.md §2): filters, weighers, single-VM scheduler, batch placement, explain.

Modules, lowest first (each imports only those above it): ``request`` (modes, Request),
``table`` (HostTable), ``filters``, ``weighers``, ``scheduler``, ``batch``, ``explain``.

Public API::

    Scheduler(pool, policy=None, seed=None)          # arrays over one PoolState snapshot
      .place(vm, mode=None, force=False, vdi_map=None, exclude=None, ha=True, margin=False) -> Placement
      .check_target(vm, host, mode=None, force=False, vdi_map=None, ha=True) -> None (raises)
      .commit(vm, host) / .commit_move(vm, host) / .set_vm(vm) / .set_host(host)
    choose_host(pool, vm, ...) -> Placement            # one-shot helpers
    check_target(pool, vm, host, ...) -> None
    place_batch(scheduler, vms, mode=START, ...) -> BatchResult   # §2.3 (mutates the scheduler's pool)
    batch_place(pool, vms, policy=None, ...) -> BatchResult
    explain(pool, vm, ...) -> ExplainReport            # §2.4 rows, footer(), to_json(), limited(k)
    no_hosts_available(pool, vm, reasons, examined) -> VmctlError   # §2.5
"""

from vmctl.engine.placement.batch import BatchResult, batch_place, place_batch
from vmctl.engine.placement.explain import ExplainReport, ExplainRow, explain, fmt_size, reason_text
from vmctl.engine.placement.filters import FILTERS
from vmctl.engine.placement.request import MIGRATE, MODE_RESTART, RESUME, START, Request
from vmctl.engine.placement.scheduler import (
    Placement,
    Scheduler,
    check_target,
    choose_host,
    mode_for,
    no_hosts_available,
    required_srs,
)

__all__ = [
    "FILTERS",
    "MIGRATE",
    "MODE_RESTART",
    "RESUME",
    "START",
    "BatchResult",
    "ExplainReport",
    "ExplainRow",
    "Placement",
    "Request",
    "Scheduler",
    "batch_place",
    "check_target",
    "choose_host",
    "explain",
    "fmt_size",
    "mode_for",
    "no_hosts_available",
    "place_batch",
    "reason_text",
    "required_srs",
]
