"""Live-migration model: the pre-copy prediction (engine.md §4.2) and stream rates (§4.3).

Pure arithmetic over plain numbers, so `vm-migrate`, evacuation, rebalancing, the benchmark and
the tests all share one definition. Units are bytes, bytes/s and seconds throughout.

Round counting follows the spec: round 0 sends the whole memory M; while round i is being sent
the guest dirties D·(M·λ^i)/R = M·λ^(i+1) bytes, so after k rounds the dirty remainder is M·λ^k
and the stop-and-copy sends exactly that. Hence the closed forms used below.

Two calibration knobs beyond the spec's inputs, neutral by default (the §4.2 vectors hold), both
measured on real hosts (bench/suites/migrate_real.py):

* the memory fraction f: QEMU sends a page that was never written (all zeros) as a few bytes, so
  round 0 sends f·M where f is the share of the guest's memory that holds data. The rounds after
  it carry pages the guest wrote, so the whole model runs on f·M;
* the setup time Ts: what a real migration spends besides streaming memory (connecting, starting
  the guest's process on the destination, the final handshake); it adds to the total time only,
  while the resume time Tr adds to both the total time and the downtime;
* the stream's ceiling C: the fastest the hosts stream a migration in practice, whatever rate
  they are allowed (their CPUs, not the link, e.g. guests under software emulation). The model
  runs at min(R, C); R stays the rate the migration is allowed (what the hypervisor is told).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmctl.engine.snapshot import PoolState, VMState
    from vmctl.errors import VmctlError

MiB = 1024**2

DEFAULT_DOWNTIME = 0.3  # s, pool migration-downtime
DEFAULT_STREAM_BANDWIDTH = 128 * MiB  # B/s, pool migration-stream-bandwidth
DEFAULT_DIRTY_RATE = 32 * MiB  # B/s, pool default-dirty-rate
DEFAULT_MAX_ROUNDS = 30
DEFAULT_BYTE_FACTOR = 3.0
DEFAULT_RESUME_TIME = 0.0
DEFAULT_SETUP_TIME = 0.0
DEFAULT_MEMORY_FRACTION = 1.0

# Hints are bisected to this precision (engine.md §4.2).
HINT_STEP = 0.1 * MiB

# A PIF's payload rate: 90% of its nominal speed (Mbit/s) in bytes/s, the rest being protocol
# overhead. 1 Mbit/s = 125,000 bytes/s.
LINK_EFFICIENCY = 0.9
BYTES_PER_MBIT = 125_000

STOP_CONVERGED = "converged"
STOP_MAX_ROUNDS = "max-rounds"
STOP_BYTE_CAP = "byte-cap"

# A migration prediction's figures and hints (engine.md §4.2), in the order plans print them.
PREDICTION_FIELDS = (
    "rounds",
    "bytes",
    "storage-bytes",
    "total-time",
    "downtime",
    "converges",
    "stop-reason",
    "dirty-rate-at-or-above-bandwidth",
    "rate",
    "memory",
    "dirty-rate",
    "downtime-target",
)
HINT_FIELDS = ("required-bandwidth", "throttle-to", "cold-downtime", "post-copy")


@dataclass(frozen=True)
class Limits:
    """Everything of the model that is not a property of the VM or of the rate."""

    downtime: float = DEFAULT_DOWNTIME
    max_rounds: int = DEFAULT_MAX_ROUNDS
    byte_factor: float = DEFAULT_BYTE_FACTOR
    resume_time: float = DEFAULT_RESUME_TIME
    setup_time: float = DEFAULT_SETUP_TIME  # total time only (calibration, see the module doc)
    memory_fraction: float = DEFAULT_MEMORY_FRACTION  # share of M sent as whole pages
    max_rate: float = math.inf  # the stream's ceiling C in bytes/s (calibration)


@dataclass(frozen=True)
class Hints:
    """What would make a non-converging migration work (engine.md §4.2)."""

    required_bandwidth: float | None  # smallest converging R on the 0.1 MiB/s grid; None if none
    throttle_to: float | None  # largest converging dirty rate at this R (auto-converge)
    cold_downtime: float  # suspend, copy M, resume
    post_copy: bool = True  # post-copy always bounds downtime (state switch only)

    def as_dict(self) -> dict:
        return {
            "required-bandwidth": self.required_bandwidth,
            "throttle-to": self.throttle_to,
            "cold-downtime": self.cold_downtime,
            "post-copy": self.post_copy,
        }


@dataclass(frozen=True)
class Prediction:
    """One migration's predicted behaviour at one rate."""

    memory: float
    dirty_rate: float
    rate: float
    downtime_target: float
    rounds: int
    bytes: float  # memory bytes, stop-and-copy included
    storage_bytes: float
    total_time: float
    downtime: float
    stop_reason: str
    dirty_rate_at_or_above_bandwidth: bool
    hints: Hints | None = field(default=None, compare=False)

    @property
    def converges(self) -> bool:
        return self.stop_reason == STOP_CONVERGED

    @property
    def total_bytes(self) -> float:
        return self.bytes + self.storage_bytes

    def as_dict(self) -> dict:
        d = {
            "memory": self.memory,
            "dirty-rate": self.dirty_rate,
            "rate": self.rate,
            "downtime-target": self.downtime_target,
            "rounds": self.rounds,
            "bytes": self.bytes,
            "storage-bytes": self.storage_bytes,
            "total-time": self.total_time,
            "downtime": self.downtime,
            "converges": self.converges,
            "stop-reason": self.stop_reason,
            "dirty-rate-at-or-above-bandwidth": self.dirty_rate_at_or_above_bandwidth,
        }
        if self.hints is not None:
            d["hints"] = self.hints.as_dict()
        return d


def _sent(memory: float, lam: float, k: int) -> float:
    """Bytes of rounds 0..k inclusive: M·(1 − λ^(k+1))/(1 − λ), or (k+1)·M when λ = 1."""
    if lam == 1.0:
        return (k + 1) * memory
    return memory * (1.0 - lam ** (k + 1)) / (1.0 - lam)


def _stop(memory: float, dirty_rate: float, rate: float, limits: Limits) -> tuple[int, str, float]:
    """(k, stop reason, λ): the first round k at which pre-copy stops, checks in spec order."""
    lam = dirty_rate / rate
    cap = limits.byte_factor * memory
    k = 0
    while True:
        remainder = memory * lam**k
        if remainder / rate <= limits.downtime:
            return k, STOP_CONVERGED, lam
        if k >= limits.max_rounds:
            return k, STOP_MAX_ROUNDS, lam
        # bytes sent in rounds 0..k-1 plus the remainder still to send = rounds 0..k
        if _sent(memory, lam, k) > cap:
            return k, STOP_BYTE_CAP, lam
        k += 1


def converges(memory: float, dirty_rate: float, rate: float, limits: Limits = Limits()) -> bool:
    if rate <= 0:
        return False
    return _stop(memory, dirty_rate, rate, limits)[1] == STOP_CONVERGED


def required_bandwidth(memory: float, dirty_rate: float, limits: Limits = Limits()) -> float | None:
    """Smallest rate at which the migration converges, by bisection to 0.1 MiB/s; the returned
    rate is the converging end of the final bracket, so it is never optimistic.

    Convergence is monotone in R (a larger R shrinks λ, every remainder and every partial sum), a
    rate of zero never converges and R = M/d always converges at round 0, which brackets it.
    """
    if memory <= 0:
        return 0.0
    if limits.downtime <= 0:
        # only a remainder of exactly zero meets a zero target: the guest must not dirty at all
        return None
    lo, hi = 0.0, memory / limits.downtime
    while not converges(memory, dirty_rate, hi, limits):  # float rounding at the bound
        hi *= 1.0 + 1e-12
    return _converging_end(lo, hi, lambda r: converges(memory, dirty_rate, r, limits), at_high=True)


def throttle_to(memory: float, dirty_rate: float, rate: float, limits: Limits = Limits()) -> float | None:
    """Largest dirty rate (at most the current one) converging at `rate`, by bisection to
    0.1 MiB/s; the returned rate is the converging end of the bracket. None when even an idle
    guest cannot converge (max-rounds 0 and M/R above the target)."""
    if rate <= 0 or not converges(memory, 0.0, rate, limits):
        return None
    if converges(memory, dirty_rate, rate, limits):
        return dirty_rate
    return _converging_end(
        0.0, float(dirty_rate), lambda d: converges(memory, d, rate, limits), at_high=False
    )


def _converging_end(lo: float, hi: float, ok, at_high: bool) -> float:
    """Bisect [lo, hi] down to HINT_STEP on a monotone predicate that holds at the `hi` end
    (at_high) or at the `lo` end; return the end of the final bracket where it holds."""
    while hi - lo > HINT_STEP:
        mid = (lo + hi) / 2
        if ok(mid) == at_high:
            hi = mid
        else:
            lo = mid
    return hi if at_high else lo


def predict(
    memory: float,
    dirty_rate: float,
    rate: float,
    limits: Limits = Limits(),
    storage_bytes: float = 0.0,
    with_hints: bool = True,
) -> Prediction:
    """The §4.2 prediction for copying `memory` bytes dirtied at `dirty_rate` over `rate`.

    `storage_bytes` (storage motion) is copied at the same rate before the memory phase: it adds
    to the total time, not to the downtime. Hints are attached only when it does not converge.
    The limits' memory fraction scales `memory` first (the prediction's `memory` is the scaled
    figure, what the stream carries), the stream runs at most at their ceiling (the prediction's
    `rate` stays the rate allowed), and their setup time adds to the total time.
    """
    if rate <= 0 or math.isnan(rate):
        raise ValueError("migration rate must be positive")
    memory = memory * limits.memory_fraction
    allowed, rate = rate, min(rate, limits.max_rate)
    k, reason, lam = _stop(memory, dirty_rate, rate, limits)
    sent = _sent(memory, lam, k)
    remainder = memory * lam**k
    hints = None
    if reason != STOP_CONVERGED and with_hints:
        hints = Hints(
            required_bandwidth=required_bandwidth(memory, dirty_rate, limits),
            throttle_to=throttle_to(memory, dirty_rate, rate, limits),
            cold_downtime=memory / rate,
        )
    return Prediction(
        memory=memory,
        dirty_rate=dirty_rate,
        rate=allowed,
        downtime_target=limits.downtime,
        rounds=k,
        bytes=sent,
        storage_bytes=storage_bytes,
        total_time=(storage_bytes + sent) / rate + limits.resume_time + limits.setup_time,
        downtime=remainder / rate + limits.resume_time,
        stop_reason=reason,
        dirty_rate_at_or_above_bandwidth=lam >= 1.0,
        hints=hints,
    )


# --- settings from the inventory ------------------------------------------------------------------


def _num(cfg: Mapping | None, key: str) -> float | None:
    """A numeric other-config value, or None when absent or unparsable (the command layer
    validates user input; the engine must not fail on a stale free-form map)."""
    if not cfg or key not in cfg:
        return None
    raw = cfg[key]
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    try:
        from vmctl.units import parse_duration, parse_rate
    except ImportError:  # pragma: no cover
        return None
    text = str(raw)
    for parser in (float, parse_rate, parse_duration):
        try:
            return float(parser(text))
        except Exception:  # noqa: BLE001 - try the next syntax
            continue
    return None


def limits_for(
    pool_other_config: Mapping | None = None,
    vm_other_config: Mapping | None = None,
    pool_downtime: float | None = None,
    downtime: float | None = None,
) -> Limits:
    """Limits from `downtime=`, else the pool's migration-downtime [300 ms]; max rounds, byte
    factor and the calibration (setup time, memory fraction, max rate) from the pool's
    other-config; resume time from the VM's other-config, else the pool's."""
    d = downtime if downtime is not None else pool_downtime if pool_downtime is not None else DEFAULT_DOWNTIME
    rounds = _num(pool_other_config, "migration-max-rounds")
    factor = _num(pool_other_config, "migration-byte-factor")
    tr = _num(vm_other_config, "migration-resume-time")
    if tr is None:
        tr = _num(pool_other_config, "migration-resume-time")
    ts = _num(pool_other_config, "migration-setup-time")
    f = _num(pool_other_config, "migration-memory-fraction")
    cap = _num(pool_other_config, "migration-max-rate")
    return Limits(
        downtime=float(d),
        max_rounds=int(rounds) if rounds is not None and rounds >= 0 else DEFAULT_MAX_ROUNDS,
        byte_factor=factor if factor is not None and factor > 0 else DEFAULT_BYTE_FACTOR,
        resume_time=tr if tr is not None and tr >= 0 else DEFAULT_RESUME_TIME,
        setup_time=ts if ts is not None and ts >= 0 else DEFAULT_SETUP_TIME,
        memory_fraction=f if f is not None and 0 < f <= 1 else DEFAULT_MEMORY_FRACTION,
        max_rate=cap if cap is not None and cap > 0 else math.inf,
    )


def dirty_rate_for(vm_other_config: Mapping | None, pool_default: float | None = None) -> float:
    """The VM's `other-config:dirty-rate`, else the pool's default-dirty-rate [32 MiB/s]."""
    v = _num(vm_other_config, "dirty-rate")
    if v is not None and v >= 0:
        return v
    return float(pool_default) if pool_default is not None else DEFAULT_DIRTY_RATE


def stream_bandwidth_for(
    bandwidth: float | None = None,
    network_other_config: Mapping | None = None,
    pool_stream_bandwidth: float | None = None,
) -> float:
    """B_s: `bandwidth=`, else the network's other-config:migration-bandwidth, else the pool's
    migration-stream-bandwidth [128 MiB/s]."""
    if bandwidth is not None:
        return float(bandwidth)
    v = _num(network_other_config, "migration-bandwidth")
    if v is not None and v > 0:
        return v
    return float(pool_stream_bandwidth) if pool_stream_bandwidth else DEFAULT_STREAM_BANDWIDTH


def link_rate(speed_mbit: float | None) -> float:
    """L = 0.9 × speed × 125,000 bytes/s; an unknown (absent or zero) speed does not limit."""
    if not speed_mbit or speed_mbit <= 0:
        return math.inf
    return LINK_EFFICIENCY * speed_mbit * BYTES_PER_MBIT


def migration_rate(
    stream_bandwidth: float,
    link_src: float = math.inf,
    k_src: int = 1,
    link_dst: float = math.inf,
    k_dst: int = 1,
) -> float:
    """R = min(B_s, L_src/k_src, L_dst/k_dst): k counts the migrations sharing each link."""
    return min(stream_bandwidth, link_src / max(1, k_src), link_dst / max(1, k_dst))


# --- the same, read from a pool snapshot --------------------------------------------------------


def resolve_network(pool: PoolState, network: str | None = None) -> str | None:
    """The migration network: `network=`, else the pool's migration-network, else the management
    network (the smallest uuid among networks marked management, for determinism); None if none."""
    if network:
        return network
    if pool.migration_network:
        return pool.migration_network
    mgmt = sorted(n.uuid for n in pool.networks.values() if n.management)
    return mgmt[0] if mgmt else None


def host_link_rate(pool: PoolState, host: str, network: str | None) -> float:
    """L of `host`'s PIF on the migration network; unknown speed or no PIF: no limit."""
    if network is None:
        return math.inf
    return link_rate(pool.hosts[host].pif_speed(network))


def pool_stream_bandwidth(pool: PoolState, network: str | None, bandwidth: float | None = None) -> float:
    """B_s for migrations over `network` in `pool`."""
    net = pool.networks.get(network) if network else None
    net_cfg = {"migration-bandwidth": net.migration_bandwidth} if net and net.migration_bandwidth else None
    return stream_bandwidth_for(bandwidth, net_cfg, pool.migration_stream_bandwidth)


def vm_limits(pool: PoolState, downtime: float | None = None) -> Limits:
    """Limits for a migration in `pool` (`downtime=` overrides the pool's target)."""
    return limits_for(pool.other_config, None, pool.migration_downtime, downtime)


def vm_dirty_rate(pool: PoolState, vm: VMState) -> float:
    """D: the VM's other-config:dirty-rate, else the pool's default-dirty-rate."""
    return float(vm.dirty_rate) if vm.dirty_rate is not None else float(pool.default_dirty_rate)


def vm_memory(vm: VMState) -> float:
    """M: the memory a live migration copies (memory-dynamic-max)."""
    return float(vm.memory_dynamic_max)


def predict_vm(
    pool: PoolState,
    vm: str,
    dst: str,
    *,
    network: str | None = None,
    bandwidth: float | None = None,
    downtime: float | None = None,
    storage_bytes: float = 0.0,
    k_src: int = 1,
    k_dst: int = 1,
) -> Prediction:
    """`vm-migrate`'s §4.2 prediction for moving `vm` from its resident host to `dst`, sharing the
    links with `k_src`/`k_dst` migrations (1: alone)."""
    v = pool.vms[vm]
    net = resolve_network(pool, network)
    rate = migration_rate(
        pool_stream_bandwidth(pool, net, bandwidth),
        host_link_rate(pool, v.resident_on, net) if v.resident_on in pool.hosts else math.inf,
        k_src,
        host_link_rate(pool, dst, net),
        k_dst,
    )
    return predict(vm_memory(v), vm_dirty_rate(pool, v), rate, vm_limits(pool, downtime), storage_bytes)


def convergence_error(pred: Prediction) -> VmctlError | None:
    """`MIGRATION_WOULD_NOT_CONVERGE` (predicted-downtime, downtime-target, required-bandwidth) for
    a prediction that does not converge, else None. Values are plain seconds and bytes/s."""
    if pred.converges:
        return None
    from vmctl.errors import VmctlError

    hints = pred.hints
    required = (
        hints.required_bandwidth
        if hints is not None
        else required_bandwidth(pred.memory, pred.dirty_rate, Limits(downtime=pred.downtime_target))
    )
    return VmctlError(
        "MIGRATION_WOULD_NOT_CONVERGE",
        "The live migration is predicted not to converge within the downtime target",
        [
            ("predicted-downtime", pred.downtime),
            ("downtime-target", pred.downtime_target),
            ("required-bandwidth", required),
        ],
    )
