"""The per-host arrays the placement filters and weighers work on (:class:`HostTable`).

Apart from the scheduler, which keeps a table in sync with its snapshot, so that the filters and
weighers can name the table they read without importing the scheduler that uses them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vmctl.engine.placement.request import Request
from vmctl.engine.snapshot import HostState, PoolState, VMState
from vmctl.errors import Ref


class HostTable:
    """Per-host arrays of one pool, in canonical (uuid) order, kept in sync by the scheduler.

    Capacities: mem_cap (A_h), vcpu_cap (V_h), cpu_count. Masks: live, enabled, not_evacuating,
    base_ok (all three). Loads: mem (Σ m under the pool policy), mem_max, mem_st, vcpu, count;
    free_mem and free_vcpu (capacity − load) make the capacity filters one comparison each. All
    int64 so capacity comparisons are exact. For the weighers, U0 (2 × n floats) holds the current
    normalised usage (memory at m, or m_max under ``dynamic``; vCPUs) and INV the inverse
    capacities, so u' = U0 + demand × INV is two vector operations.
    """

    def __init__(self, pool: PoolState) -> None:
        import numpy as np

        self.pool = pool
        self.uuids: list[str] = pool.host_uuids()
        self.uuid_bytes = [u.encode() for u in self.uuids]
        self.index: dict[str, int] = {u: i for i, u in enumerate(self.uuids)}
        self.hosts: list[HostState] = [pool.hosts[u] for u in self.uuids]
        self.n = len(self.uuids)
        self.dynamic = pool.memory_policy == "dynamic"
        hs = self.hosts
        self.mem_cap = np.array([h.memory_capacity for h in hs], dtype=np.int64)
        self.vcpu_cap = np.array([h.vcpu_capacity(pool.vcpu_ratio) for h in hs], dtype=np.int64)
        self.cpu_count = np.array([h.cpu_count for h in hs], dtype=np.int64)
        self.min_cpu_count = int(self.cpu_count.min()) if self.n else 0
        self.mem_cap_f = self.mem_cap.astype(np.float64)
        self.vcpu_cap_f = self.vcpu_cap.astype(np.float64)
        caps = np.vstack([self.mem_cap_f, self.vcpu_cap_f]) if self.n else np.zeros((2, 0))
        # Hosts without capacity in a dimension never pass its filter; 0 keeps the math finite.
        self.INV = np.divide(1.0, caps, out=np.zeros_like(caps), where=caps > 0)
        self.live = np.array([h.live for h in hs], dtype=bool)
        self.enabled = np.array([h.enabled for h in hs], dtype=bool)
        self.not_evacuating = np.array([not h.evacuating for h in hs], dtype=bool)
        self.usable = self.live & self.enabled
        self.base_ok = self.usable & self.not_evacuating
        self.master_index = self.index.get(pool.master) if pool.master is not None else None
        loads = pool.loads()
        self.mem = np.array([loads[u].mem for u in self.uuids], dtype=np.int64)
        self.mem_max = np.array([loads[u].mem_max for u in self.uuids], dtype=np.int64)
        self.mem_st = np.array([loads[u].mem_st for u in self.uuids], dtype=np.int64)
        self.vcpu = np.array([loads[u].vcpus for u in self.uuids], dtype=np.int64)
        self.count = np.array([loads[u].count for u in self.uuids], dtype=np.int64)
        self.occupied = self.count > 0
        # Connectivity a host offers (networks + SRs): the scarcer-first tie-break for empty hosts.
        self.extras = np.array([len(h.networks) + len(h.srs) for h in hs], dtype=np.int64)
        # (sorted(set()) rather than np.unique, which imports numpy.ma: 20 ms of every placement)
        self._extra_levels = [(k, self.extras == k) for k in sorted(set(self.extras.tolist()))]
        self.NEG_INF = np.full(self.n, -np.inf)
        self.free_mem = self.mem_cap - self.mem
        self.free_vcpu = self.vcpu_cap - self.vcpu
        memload = self.mem_max if self.dynamic else self.mem
        self.U0 = (
            np.vstack([memload.astype(np.float64), self.vcpu.astype(np.float64)]) * self.INV
            if self.n
            else np.zeros((2, 0))
        )
        self._masks: dict[Any, Any] = {}
        self._groups: dict[str, Any] = {}
        self._refresh_capacity_sums()

    # ---- references for error params ---------------------------------------------------------
    def ref(self, i: int) -> Ref:
        h = self.hosts[i]
        return Ref("host", h.uuid, h.name or None)

    def sr_ref(self, uuid: str) -> Ref:
        sr = self.pool.srs.get(uuid)
        return Ref("sr", uuid, sr.name if sr and sr.name else None)

    def network_ref(self, uuid: str) -> Ref:
        net = self.pool.networks.get(uuid)
        return Ref("network", uuid, net.name if net and net.name else None)

    def group_ref(self, uuid: str) -> Ref:
        g = self.pool.groups.get(uuid)
        return Ref("vm-group", uuid, g.name if g and g.name else None)

    # ---- cached static masks -------------------------------------------------------------------
    def cached_mask(self, key: Any, pred: Callable[[HostState], bool]) -> Any:
        """The mask of a static filter for one signature, computed once. A mask where every host
        passes is cached as None so the hot path skips it."""
        try:
            return self._masks[key]
        except KeyError:
            import numpy as np

            m = np.fromiter((pred(h) for h in self.hosts), dtype=bool, count=self.n)
            self._masks[key] = None if m.all() else m
            return self._masks[key]

    def fewest_extras(self, mask: Any) -> Any:
        """The hosts of ``mask`` offering the fewest networks + SRs (mask must not be empty)."""
        import numpy as np

        if len(self._extra_levels) == 1:
            return mask
        for _, level in self._extra_levels:
            m = mask & level
            if np.count_nonzero(m):
                return m
        return mask  # pragma: no cover - mask was empty

    # ---- group counts --------------------------------------------------------------------------
    def group_counts(self, group: str, req: Request) -> Any:
        """Members of ``group`` counted per host, without the request's own members."""
        arr = self._groups.get(group)
        if arr is None:
            import numpy as np

            arr = np.zeros(self.n, dtype=np.int64)
            for h, c in self.pool.group_hosts(group).items():
                i = self.index.get(h)
                if i is not None:
                    arr[i] = c
            self._groups[group] = arr
        own = req.self_hosts.get(group)
        if own:
            arr = arr.copy()
            for h in own:
                i = self.index.get(h)
                if i is not None:
                    arr[i] -= 1
        return arr

    # ---- demand mix ------------------------------------------------------------------------------
    def _refresh_capacity_sums(self) -> None:
        self.cap_mem_sum = float(self.mem_cap_f[self.usable].sum())
        self.cap_vcpu_sum = float(self.vcpu_cap_f[self.usable].sum())
        memload = self.mem_max if self.dynamic else self.mem
        self.load_mem_sum = int(memload[self.usable].sum())
        self.load_vcpu_sum = int(self.vcpu[self.usable].sum())

    def mix_sums(self, req: Request) -> tuple[float, float]:
        dm = req.mem_max if self.dynamic else req.mem
        gm = (self.load_mem_sum + dm) / self.cap_mem_sum if self.cap_mem_sum > 0 else 0.0
        gc = (self.load_vcpu_sum + req.vcpus) / self.cap_vcpu_sum if self.cap_vcpu_sum > 0 else 0.0
        return gm, gc

    # ---- incremental updates -------------------------------------------------------------------
    def apply_vm(self, vm: VMState, sign: int) -> None:
        """Add (sign=1) or remove (sign=-1) a VM's load on the hosts it is counted on."""
        hosts = vm.load_hosts()
        if not hosts:
            return
        m_st = vm.m_st
        m_max = vm.m_max
        mem = vm.m_min if self.dynamic else m_st
        load_m = m_max if self.dynamic else mem
        c = vm.vcpus
        for h in hosts:
            i = self.index.get(h)
            if i is None:
                continue
            self.mem[i] += sign * mem
            self.free_mem[i] -= sign * mem
            self.mem_max[i] += sign * m_max
            self.mem_st[i] += sign * m_st
            self.vcpu[i] += sign * c
            self.free_vcpu[i] -= sign * c
            n = int(self.count[i]) + sign
            self.count[i] = n
            self.occupied[i] = n > 0
            memload = self.mem_max[i] if self.dynamic else self.mem[i]
            self.U0[0, i] = float(memload) * self.INV[0, i]
            self.U0[1, i] = float(self.vcpu[i]) * self.INV[1, i]
            if self.usable[i]:
                self.load_mem_sum += sign * load_m
                self.load_vcpu_sum += sign * c
            for g in vm.groups:
                arr = self._groups.get(g)
                if arr is not None:
                    arr[i] += sign

    def refresh_host(self, host: HostState) -> None:
        """A host's value changed (live, enabled, evacuating...): refresh its flags and caches."""
        i = self.index[host.uuid]
        self.hosts[i] = host
        self.live[i] = host.live
        self.enabled[i] = host.enabled
        self.not_evacuating[i] = not host.evacuating
        self.usable = self.live & self.enabled
        self.base_ok = self.usable & self.not_evacuating
        self._masks.clear()
        self._refresh_capacity_sums()
