"""What one placement decision is asked: the mode and the :class:`Request` (engine.md §2.1).

Its own module, below the filters, the weighers and the host table, because all of them read a
request while none of them needs the others to describe one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vmctl.engine.snapshot import VMState

# Modes: which optional filters apply (engine.md §2.1 rows 4 and 5).
START = "start"  # cold boot: no cpu filter; version only during a rolling upgrade
RESUME = "resume"  # keeps CPU state: cpu filter
MIGRATE = "migrate"  # live migration, evacuation, rebalancing: cpu and version filters
# Not plain RESTART: that is the HA restart priority of a VM (snapshot.RESTART), a different thing.
MODE_RESTART = "restart"  # HA restart: a cold boot
MODES = (START, RESUME, MIGRATE, MODE_RESTART)


@dataclass(slots=True)
class Request:
    """One VM to place, with what the filters need beyond the snapshot.

    vm: the VM (its demand is summed with ``extra`` members for a batch item).
    mode: START | RESUME | MIGRATE | MODE_RESTART. force: skip the cpu filter (``--force``).
    srs: the SRs it needs (after a ``vdi:`` migration map), networks: its VIF networks.
    mem, mem_min, mem_max, mem_st, vcpus: demand (summed over a batch item's members).
    max_vcpus: the largest single VM's vcpus (``vcpus ≤ cpu-count`` is per VM).
    members: uuids of the VMs placed together (one for a plain request).
    strict_aff / strict_anti / soft_aff / soft_anti: group uuids by rule, sorted.
    self_hosts: hosts where the members are currently counted (migration source); their own
        contribution is removed from the group counts of the rules filter and soft weigher.
    source_version: the version filter's floor: a migration's source host version, a start's or
        resume's newest version in the pool during a rolling upgrade, else None.
    conflict: a strict anti-affinity group that two members of this (strict affinity) item share:
        the item can go nowhere.
    """

    vm: VMState
    mode: str = START
    force: bool = False
    srs: frozenset[str] = frozenset()
    networks: frozenset[str] = frozenset()
    mem: int = 0
    mem_min: int = 0
    mem_max: int = 0
    mem_st: int = 0
    vcpus: int = 0
    max_vcpus: int = 0
    members: tuple[str, ...] = ()
    strict_aff: tuple[str, ...] = ()
    strict_anti: tuple[str, ...] = ()
    soft_aff: tuple[str, ...] = ()
    soft_anti: tuple[str, ...] = ()
    self_hosts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    source_version: tuple[int, ...] | None = None
    conflict: str | None = None  # a strict anti-affinity group holding two members of this item

    @property
    def cpu_applies(self) -> bool:
        return self.mode in (RESUME, MIGRATE) and not self.force

    @property
    def version_applies(self) -> bool:
        return self.source_version is not None
