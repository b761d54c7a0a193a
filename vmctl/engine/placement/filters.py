"""The ordered host filters of engine.md §2.1, one small unit each.

Every filter works on a :class:`~vmctl.engine.placement.table.HostTable` (per-host arrays) and a
:class:`~vmctl.engine.placement.request.Request` (re-exported here with the modes), and offers two
things:

* ``mask(table, req)``: a NumPy bool array over all hosts, true where the host passes. The fast
  path of the scheduler ANDs these; the masks of the static filters are cached per signature
  (SR set, network set, CPU requirement, source version) so a decision costs a few array ops.
* ``reason(table, req, i)``: the code and params for host index ``i`` when it is rejected, used for
  an explicit target, the ``--explain`` report and the ``NO_HOSTS_AVAILABLE`` summary.

Filter 11 (HA) is not here: it is expensive and runs lazily in rank order (scheduler.py).
"""

from __future__ import annotations

from typing import Any

from vmctl.engine.placement.request import MIGRATE as MIGRATE
from vmctl.engine.placement.request import MODE_RESTART as MODE_RESTART
from vmctl.engine.placement.request import MODES as MODES
from vmctl.engine.placement.request import RESUME as RESUME
from vmctl.engine.placement.request import START as START
from vmctl.engine.placement.request import Request
from vmctl.engine.placement.table import HostTable
from vmctl.engine.snapshot import VMState
from vmctl.errors import Ref

Params = list[tuple[str, Any]]


def vm_ref(vm: VMState) -> Ref:
    return Ref("vm", vm.uuid, vm.name or None)


class Filter:
    """Base: ``index`` (1-based, table order), ``name`` and the codes it can give."""

    index = 0
    name = ""
    code = ""

    def mask(self, table: HostTable, req: Request) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def reason(self, table: HostTable, req: Request, i: int) -> tuple[str, Params]:
        return self.code, [("host", table.ref(i))]


class LiveFilter(Filter):
    index, name, code = 1, "live", "HOST_NOT_LIVE"

    def mask(self, table: HostTable, req: Request) -> Any:
        return table.live


class EnabledFilter(Filter):
    index, name, code = 2, "enabled", "HOST_DISABLED"

    def mask(self, table: HostTable, req: Request) -> Any:
        return table.enabled


class EvacuationFilter(Filter):
    index, name, code = 3, "evacuation", "HOST_EVACUATE_IN_PROGRESS"

    def mask(self, table: HostTable, req: Request) -> Any:
        return table.not_evacuating


class CpuFilter(Filter):
    """Only when the VM keeps its CPU state (resume, live migration) and without ``--force``.
    On a real pool, the host's verdict from the driver's CPU comparison (HostState.cpu_compatible)."""

    index, name, code = 4, "cpu", "VM_INCOMPATIBLE_WITH_THIS_HOST"

    def mask(self, table: HostTable, req: Request) -> Any:
        if not req.cpu_applies:
            return None
        vm = req.vm
        return table.cached_mask(
            ("cpu", vm.last_boot_cpu_vendor, vm.last_boot_cpu_flags),
            lambda h: (
                h.cpu_compatible
                if h.cpu_compatible is not None
                else h.cpu_vendor == vm.last_boot_cpu_vendor and vm.last_boot_cpu_flags <= h.cpu_flags
            ),
        )

    def reason(self, table: HostTable, req: Request, i: int) -> tuple[str, Params]:
        h = table.hosts[i]
        vm = req.vm
        if h.cpu_compatible is False:
            why = "the host cannot run the pool master's CPU"
        elif h.cpu_vendor != vm.last_boot_cpu_vendor:
            why = "vendor differs"
        else:
            why = "missing flags: " + ",".join(sorted(vm.last_boot_cpu_flags - h.cpu_flags))
        return self.code, [("vm", vm_ref(vm)), ("host", table.ref(i)), ("reason", why)]


class VersionFilter(Filter):
    """XAPI's rolling-upgrade rule (NOT_SUPPORTED_DURING_UPGRADE [host, vm]): a migration goes to a
    host of at least the source's software version (Helpers.Checks.Migration
    .host_versions_not_decreasing), and while the pool's hosts run different versions a start or
    resume goes to a host of the newest one (Helpers.Checks.RPU.assert_host_has_highest_version_in_pool).
    The floor is the request's ``source_version``; HA restarts have none."""

    index, name, code = 5, "version", "NOT_SUPPORTED_DURING_UPGRADE"

    def mask(self, table: HostTable, req: Request) -> Any:
        if not req.version_applies:
            return None
        src = req.source_version
        assert src is not None
        return table.cached_mask(("version", src), lambda h: h.software_version >= src)

    def reason(self, table: HostTable, req: Request, i: int) -> tuple[str, Params]:
        return self.code, [("host", table.ref(i)), ("vm", vm_ref(req.vm))]


class StorageFilter(Filter):
    index, name, code = 6, "storage", "VM_REQUIRES_SR"

    def mask(self, table: HostTable, req: Request) -> Any:
        if not req.srs:
            return None
        srs = req.srs
        return table.cached_mask(("sr", srs), lambda h: srs <= h.srs)

    def reason(self, table: HostTable, req: Request, i: int) -> tuple[str, Params]:
        missing = sorted(req.srs - table.hosts[i].srs)
        return self.code, [("vm", vm_ref(req.vm)), ("sr", table.sr_ref(missing[0]))]


class NetworkFilter(Filter):
    index, name, code = 7, "network", "VM_REQUIRES_NETWORK"

    def mask(self, table: HostTable, req: Request) -> Any:
        if not req.networks:
            return None
        nets = req.networks
        return table.cached_mask(("net", nets), lambda h: nets <= h.networks)

    def reason(self, table: HostTable, req: Request, i: int) -> tuple[str, Params]:
        missing = sorted(req.networks - table.hosts[i].networks)
        return self.code, [("vm", vm_ref(req.vm)), ("network", table.network_ref(missing[0]))]


class VcpuFilter(Filter):
    """``vcpus ≤ cpu-count`` (per VM) and ``Σ c(load) + c(v) ≤ V_h``."""

    index, name, code = 9, "vcpu", "HOST_NOT_ENOUGH_VCPUS"

    def mask(self, table: HostTable, req: Request) -> Any:
        ok = table.free_vcpu >= req.vcpus
        if req.max_vcpus > table.min_cpu_count:
            ok &= table.cpu_count >= req.max_vcpus
        return ok

    def rows(self, table: HostTable, vcpus: Any) -> Any:
        """The load half of ``mask`` for K integer demands at once (K × n): what the planners
        that score many candidates together use, so the rule stays here."""
        return table.free_vcpu[None, :] >= vcpus[:, None]

    def pcpu_rows(self, table: HostTable, max_vcpus: Any) -> Any:
        """The per-VM half of ``mask`` (``vcpus ≤ cpu-count``) for K items at once (K × n): it
        depends on no load, so planners compute it once per item."""
        return table.cpu_count[None, :] >= max_vcpus[:, None]

    def reason(self, table: HostTable, req: Request, i: int) -> tuple[str, Params]:
        pcpus = int(table.cpu_count[i])
        if req.max_vcpus > pcpus:
            return "HOST_NOT_ENOUGH_PCPUS", [("vcpus", req.max_vcpus), ("pcpus", pcpus)]
        avail = max(0, int(table.vcpu_cap[i] - table.vcpu[i]))
        return self.code, [("needed", req.vcpus), ("available", avail)]


class MemoryFilter(Filter):
    """``Σ m(load) + m(v) ≤ A_h`` with m the pool policy's charge (m_min under ``dynamic``)."""

    index, name, code = 8, "memory", "HOST_NOT_ENOUGH_FREE_MEMORY"

    def mask(self, table: HostTable, req: Request) -> Any:
        return table.free_mem >= req.mem

    def rows(self, table: HostTable, mem: Any) -> Any:
        """``mask`` for K integer demands at once (K × n), for the planners (see VcpuFilter.rows)."""
        return table.free_mem[None, :] >= mem[:, None]

    def reason(self, table: HostTable, req: Request, i: int) -> tuple[str, Params]:
        avail = max(0, int(table.mem_cap[i] - table.mem[i]))
        return self.code, [("needed", req.mem), ("available", avail)]


class RulesFilter(Filter):
    """Strict groups: affinity needs every running member on h, anti-affinity none."""

    index, name, code = 10, "rules", "VM_GROUP_RULE_VIOLATED"

    def mask(self, table: HostTable, req: Request) -> Any:
        if not req.strict_aff and not req.strict_anti:
            return None
        if req.conflict is not None:
            import numpy as np

            return np.zeros(table.n, dtype=bool)
        ok = None
        for g in req.strict_aff:
            counts = table.group_counts(g, req)
            total = int(counts.sum())
            m = counts == total  # all members here (or none running anywhere)
            ok = m if ok is None else ok & m
        for g in req.strict_anti:
            m = table.group_counts(g, req) == 0
            ok = m if ok is None else ok & m
        return ok

    def reason(self, table: HostTable, req: Request, i: int) -> tuple[str, Params]:
        if req.conflict is not None:
            return self.code, [
                ("vm", vm_ref(req.vm)),
                ("group", table.group_ref(req.conflict)),
                ("host", table.ref(i)),
            ]
        for g in req.strict_aff:
            counts = table.group_counts(g, req)
            if counts[i] != counts.sum():
                return self.code, [
                    ("vm", vm_ref(req.vm)),
                    ("group", table.group_ref(g)),
                    ("host", table.ref(i)),
                ]
        for g in req.strict_anti:
            if table.group_counts(g, req)[i] != 0:
                return self.code, [
                    ("vm", vm_ref(req.vm)),
                    ("group", table.group_ref(g)),
                    ("host", table.ref(i)),
                ]
        return self.code, [("vm", vm_ref(req.vm)), ("host", table.ref(i))]  # pragma: no cover


HA_FILTER_INDEX = 11
#: The code of filter 11 and of admission control (vmctl.engine.ha): here, so that placing a VM
#: does not import the HA planner.
HA_CODE = "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN"

#: Filters 1–10 in table order.
FILTERS: tuple[Filter, ...] = (
    LiveFilter(),
    EnabledFilter(),
    EvacuationFilter(),
    CpuFilter(),
    VersionFilter(),
    StorageFilter(),
    NetworkFilter(),
    MemoryFilter(),  # before the CPUs, as XAPI's assert_can_boot_here checks them
    VcpuFilter(),
    RulesFilter(),
)
FILTER_NAMES = {f.index: f.name for f in FILTERS} | {HA_FILTER_INDEX: "ha"}
#: Each filter by its name (``live`` … ``rules``): how callers address one filter.
BY_NAME: dict[str, Filter] = {f.name: f for f in FILTERS}
#: Each filter by the number a rejection reports (``first_failures``, explain rows).
BY_INDEX: dict[int, Filter] = {f.index: f for f in FILTERS}


def named(*names: str) -> tuple[Filter, ...]:
    return tuple(BY_NAME[n] for n in names)


# Named groups, by what a filter depends on (and so how often its mask changes).
#: The host's own state: folded into ``HostTable.base_ok``, never evaluated per request.
HOST_STATE_FILTERS = named("live", "enabled", "evacuation")
#: The VM's signature against fixed host properties: masks cached per signature.
SIGNATURE_FILTERS = named("cpu", "version", "storage", "network")
#: Fixed while a plan moves VMs around (evacuation, rebalancing): host state and signature.
STATIC_FILTERS = HOST_STATE_FILTERS + SIGNATURE_FILTERS
#: The hosts' current load.
CAPACITY_FILTERS = named("memory", "vcpu")
#: What a request adds to ``base_ok``: everything but the host state.
REQUEST_FILTERS = SIGNATURE_FILTERS + CAPACITY_FILTERS + named("rules")
assert STATIC_FILTERS + CAPACITY_FILTERS + named("rules") == FILTERS, (
    "groups must cover filters 1–10 in order"
)
#: The codes in filter order (for the NO_HOSTS_AVAILABLE grouping).
CODE_ORDER = (
    "HOST_NOT_LIVE",
    "HOST_DISABLED",
    "HOST_EVACUATE_IN_PROGRESS",
    "VM_INCOMPATIBLE_WITH_THIS_HOST",
    "NOT_SUPPORTED_DURING_UPGRADE",
    "VM_REQUIRES_SR",
    "VM_REQUIRES_NETWORK",
    "HOST_NOT_ENOUGH_FREE_MEMORY",
    "HOST_NOT_ENOUGH_PCPUS",
    "HOST_NOT_ENOUGH_VCPUS",
    "VM_GROUP_RULE_VIOLATED",
    HA_CODE,
)
