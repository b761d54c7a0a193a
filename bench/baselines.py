"""Baselines of engine.md §8.2, as plain per-host Python loops (they live only under bench/).

They apply the same feasibility rules as the engine (liveness, storage, network, pCPUs, vCPU and
memory capacity, strict group rules) so every engine chooses within the same feasible sets; only
the structure (a filter pass over the whole host list per decision) and the choice differ.
"""

from __future__ import annotations

from vmctl.engine.snapshot import PoolState, VMState


class BHost:
    __slots__ = (
        "uuid",
        "ok",
        "srs",
        "networks",
        "cpu_count",
        "mem_cap",
        "vcpu_cap",
        "mem",
        "vcpu",
        "count",
        "groups",
    )

    def __init__(self, uuid, ok, srs, networks, cpu_count, mem_cap, vcpu_cap, mem, vcpu, count):
        self.uuid, self.ok, self.srs, self.networks = uuid, ok, srs, networks
        self.cpu_count, self.mem_cap, self.vcpu_cap = cpu_count, mem_cap, vcpu_cap
        self.mem, self.vcpu, self.count = mem, vcpu, count
        self.groups: dict[str, int] = {}


class NovaLike:
    """Online scheduler with Nova's filter-scheduler structure: each filter applied in turn to the
    whole host list, then a weigher (``ff``: first remaining host in inventory order; ``spread``:
    most free memory, RAM weigher multiplier +1)."""

    def __init__(self, pool: PoolState, host_order: list[str], mode: str = "ff") -> None:
        self.pool = pool
        self.mode = mode
        loads = pool.loads()
        self.hosts = [
            BHost(
                u,
                pool.hosts[u].live and pool.hosts[u].enabled and not pool.hosts[u].evacuating,
                pool.hosts[u].srs,
                pool.hosts[u].networks,
                pool.hosts[u].cpu_count,
                pool.mem_capacity(u),
                pool.vcpu_capacity(u),
                loads[u].mem,
                loads[u].vcpus,
                loads[u].count,
            )
            for u in host_order
        ]
        self.by_uuid = {h.uuid: h for h in self.hosts}
        self.strict = {
            g.uuid: g.placement
            for g in pool.groups.values()
            if g.strict and g.placement in ("affinity", "anti-affinity")
        }
        for g in self.strict:
            for h, c in pool.group_hosts(g).items():
                if h in self.by_uuid:
                    self.by_uuid[h].groups[g] = c
        self.where: dict[str, BHost] = {}
        self.nonempty = sum(1 for h in self.hosts if h.count > 0)
        self.peak_nonempty = self.nonempty

    def place(self, vm: VMState) -> str | None:
        m = vm.m(self.pool.memory_policy)
        c = vm.vcpus
        hosts = [h for h in self.hosts if h.ok]
        hosts = [h for h in hosts if vm.srs <= h.srs]
        hosts = [h for h in hosts if vm.networks <= h.networks]
        hosts = [h for h in hosts if h.cpu_count >= c and h.vcpu + c <= h.vcpu_cap]
        hosts = [h for h in hosts if h.mem + m <= h.mem_cap]
        for g in vm.groups:
            rule = self.strict.get(g)
            if rule == "anti-affinity":
                hosts = [h for h in hosts if h.groups.get(g, 0) == 0]
            elif rule == "affinity":
                occupied = [h for h in self.hosts if h.groups.get(g, 0) > 0]
                if occupied:
                    hosts = [h for h in hosts if h is occupied[0] and len(occupied) == 1]
        if not hosts:
            return None
        if self.mode == "ff":
            best = hosts[0]
        else:
            best = hosts[0]
            free = best.mem_cap - best.mem
            for h in hosts[1:]:
                f = h.mem_cap - h.mem
                if f > free:
                    best, free = h, f
        return best.uuid

    def commit(self, vm: VMState, host: str) -> None:
        h = self.by_uuid[host]
        h.mem += vm.m(self.pool.memory_policy)
        h.vcpu += vm.vcpus
        h.count += 1
        for g in vm.groups:
            if g in self.strict:
                h.groups[g] = h.groups.get(g, 0) + 1
        if h.count == 1:
            self.nonempty += 1
            self.peak_nonempty = max(self.peak_nonempty, self.nonempty)
        self.where[vm.uuid] = h

    def release(self, vm: VMState) -> None:
        h = self.where.pop(vm.uuid)
        h.mem -= vm.m(self.pool.memory_policy)
        h.vcpu -= vm.vcpus
        h.count -= 1
        for g in vm.groups:
            if g in self.strict:
                h.groups[g] -= 1
        if h.count == 0:
            self.nonempty -= 1


def ffd_sum(pool: PoolState, host_order: list[str], vms: list[VMState]) -> tuple[dict[str, str], list[str]]:
    """Offline first-fit decreasing by Σ_d (mean normalised demand_d × normalised demand_d); hosts
    opened in inventory order. Returns (placement, unplaced VM uuids)."""
    caps = [(pool.mem_capacity(u), pool.vcpu_capacity(u)) for u in host_order]
    cap_m = max(c[0] for c in caps)
    cap_c = max(c[1] for c in caps)
    mp = pool.memory_policy
    norm = [(v.m(mp) / cap_m, v.vcpus / cap_c) for v in vms]
    mean_m = sum(x[0] for x in norm) / len(norm)
    mean_c = sum(x[1] for x in norm) / len(norm)
    order = sorted(range(len(vms)), key=lambda i: (-(mean_m * norm[i][0] + mean_c * norm[i][1]), vms[i].uuid))
    hs = [
        BHost(
            u,
            True,
            pool.hosts[u].srs,
            pool.hosts[u].networks,
            pool.hosts[u].cpu_count,
            caps[k][0],
            caps[k][1],
            0,
            0,
            0,
        )
        for k, u in enumerate(host_order)
    ]
    opened: list[BHost] = []
    nxt = 0
    out: dict[str, str] = {}
    unplaced: list[str] = []
    for i in order:
        v = vms[i]
        m = v.m(mp)
        placed = None
        for h in opened:
            if (
                h.mem + m <= h.mem_cap
                and h.vcpu + v.vcpus <= h.vcpu_cap
                and v.srs <= h.srs
                and v.networks <= h.networks
                and v.vcpus <= h.cpu_count
            ):
                placed = h
                break
        while placed is None and nxt < len(hs):
            h = hs[nxt]
            nxt += 1
            opened.append(h)
            if (
                m <= h.mem_cap
                and v.vcpus <= h.vcpu_cap
                and v.srs <= h.srs
                and v.networks <= h.networks
                and v.vcpus <= h.cpu_count
            ):
                placed = h
        if placed is None:
            unplaced.append(v.uuid)
            continue
        placed.mem += m
        placed.vcpu += v.vcpus
        placed.count += 1
        out[v.uuid] = placed.uuid
    return out, unplaced


def _ha_hosts(pool: PoolState):
    loads = pool.loads()
    hosts = [u for u in pool.host_uuids() if pool.hosts[u].live and pool.hosts[u].enabled]
    prot = {u: [] for u in hosts}
    for v in pool.vms.values():
        if v.protected and v.resident_on in prot:
            prot[v.resident_on].append(v)
    free = {
        u: (pool.mem_capacity(u) - loads[u].mem_st, pool.vcpu_capacity(u) - loads[u].vcpus) for u in hosts
    }
    return hosts, prot, free


def xapi_approx(pool: PoolState) -> int:
    """Max failures with every protected VM sized as the largest protected VM (per dimension) and
    the largest hosts (capacity, then protected count) assumed to fail; slots counted in the
    survivors' free capacity."""
    hosts, prot, free = _ha_hosts(pool)
    allp = [v for lst in prot.values() for v in lst]
    if not allp:
        return max(0, len(hosts) - 1)
    sm = max(v.m_st for v in allp)
    sc = max(v.vcpus for v in allp)
    order = sorted(hosts, key=lambda u: (-pool.mem_capacity(u), -pool.vcpu_capacity(u), -len(prot[u]), u))
    best = 0
    for r in range(1, len(hosts)):
        failed = set(order[:r])
        need = sum(len(prot[u]) for u in failed)
        slots = sum(min(max(0, free[u][0]) // sm, max(0, free[u][1]) // sc) for u in hosts if u not in failed)
        if slots >= need:
            best = r
        else:
            break
    return best


def slot_policy(pool: PoolState) -> int:
    """vSphere-style slot admission: one slot sized by the largest reservation per dimension; every
    host offers min_d ⌊capacity_d / slot_d⌋ slots; the protected VMs use one slot each; the largest
    hosts fail. Max r such that the remaining slots still hold every protected VM."""
    hosts, prot, _ = _ha_hosts(pool)
    allp = [v for lst in prot.values() for v in lst]
    if not allp:
        return max(0, len(hosts) - 1)
    sm = max(v.m_st for v in allp)
    sc = max(v.vcpus for v in allp)
    slots = {u: min(pool.mem_capacity(u) // sm, pool.vcpu_capacity(u) // sc) for u in hosts}
    used = len(allp)
    order = sorted(hosts, key=lambda u: (-slots[u], u))
    total = sum(slots.values())
    best = 0
    for r in range(1, len(hosts)):
        total -= slots[order[r - 1]]
        if total >= used:
            best = r
        else:
            break
    return best
