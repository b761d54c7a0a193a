"""Loader of the Azure-derived VM arrival trace (engine.md §8.3).

The files must match the published counts exactly; anything else is refused with a ValueError,
so a benchmark can never silently run on a different trace.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

GiB = 1024**3

LINES = 1000
FIRST_T, LAST_T, STEP = 1_800_000, 2_099_700, 300
TOTAL_VMS = 259_159
U_COUNT, C_COUNT = 244_842, 14_317
FLAVORS = 16
INTERVAL_LINES = 5761  # 0 … 1,728,000 s on a 300 s grid
BINS = 46
CENSOR = 2_100_000


@dataclass(frozen=True, slots=True)
class Flavor:
    letter: str
    vcpus: int
    memory: int  # bytes (static-min = dynamic-min = dynamic-max = static-max)


@dataclass(frozen=True, slots=True)
class Arrival:
    """One VM of the trace: arrival time, flavor, departure (None: never departs), tenant batch."""

    index: int
    t: int
    flavor: Flavor
    end: float | None
    batch: int


def default_dir() -> Path:
    env = os.environ.get("VMCTL_TRACE_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "data" / "azure-v1"


def _refuse(what: str) -> ValueError:
    return ValueError(f"trace refused: {what} (expected the azure-v1 dev split, engine.md §8.3)")


def load_flavors(d: Path) -> dict[str, Flavor]:
    out: dict[str, Flavor] = {}
    lines = (d / "flav_map.txt").read_text().split("\n")
    lines = [ln for ln in lines if ln.strip()]
    if len(lines) != FLAVORS:
        raise _refuse(f"flav_map.txt has {len(lines)} lines, not {FLAVORS}")
    for ln in lines:
        spec, letter = ln.split()
        cpu, gib = spec.split(",")
        out[letter] = Flavor(letter, int(cpu), round(float(gib) * GiB))
    return out


def load_bins(d: Path) -> list[int]:
    """lo_k for k = 0 … 45: the smallest seconds value mapped to bin k."""
    lines = [ln for ln in (d / "v1.interval_map.txt").read_text().split("\n") if ln.strip()]
    if len(lines) != INTERVAL_LINES:
        raise _refuse(f"v1.interval_map.txt has {len(lines)} lines, not {INTERVAL_LINES}")
    lo: dict[int, int] = {}
    prev = -300
    for ln in lines:
        s, b = ln.split()
        sec, k = int(s), int(b)
        if sec != prev + 300:
            raise _refuse("v1.interval_map.txt is not on a 300 s grid")
        prev = sec
        lo[k] = min(lo.get(k, sec), sec)
    if sorted(lo) != list(range(BINS)) or prev != 1_728_000:
        raise _refuse("v1.interval_map.txt does not define bins 0-45 up to 1,728,000 s")
    return [lo[k] for k in range(BINS)]


def _split(line: str) -> tuple[int, list[str]]:
    head, _, rest = line.partition(" ")
    return int(head), rest.split(",") if rest else []


def load(d: Path | str | None = None, seed: int = 1, lines: int | None = None) -> list[Arrival]:
    """All arrivals in file order with their departure times drawn from ``random.Random(seed)``.
    ``lines`` keeps only the first lines (the ``ci`` replay), after checking the whole files."""
    d = Path(d) if d is not None else default_dir()
    flavors = load_flavors(d)
    lo = load_bins(d)
    arr_lines = [ln for ln in (d / "v1.dev.txt").read_text().split("\n") if ln.strip()]
    life_lines = [ln for ln in (d / f"v1.dev.c{CENSOR}.txt").read_text().split("\n") if ln.strip()]
    if len(arr_lines) != LINES or len(life_lines) != LINES:
        raise _refuse(f"{len(arr_lines)}/{len(life_lines)} lines, not {LINES}")
    rng = random.Random(seed)
    out: list[Arrival] = []
    n_u = n_c = 0
    batch = 0
    for li, (a, b) in enumerate(zip(arr_lines, life_lines)):
        t, toks = _split(a)
        t2, lts = _split(b)
        if t != FIRST_T + li * STEP or t2 != t:
            raise _refuse(f"line {li + 1}: timestamp {t}/{t2}")
        if len(toks) != len(lts) or not toks or toks[-1] != "|":
            raise _refuse(f"line {li + 1}: tokens not aligned")
        for tok, lt in zip(toks, lts):
            if tok == "|":
                if lt != "|":
                    raise _refuse(f"line {li + 1}: separators not aligned")
                batch += 1
                continue
            fl = flavors.get(tok)
            if fl is None:
                raise _refuse(f"line {li + 1}: unknown flavor {tok!r}")
            k = int(lt[1:])
            if lt[0] == "U":
                n_u += 1
                u = rng.random()
                if k + 1 < BINS:
                    end: float | None = t + lo[k] + u * (lo[k + 1] - lo[k])
                else:
                    end = float(t + lo[k])
            elif lt[0] == "C":
                n_c += 1
                end = None
            else:
                raise _refuse(f"line {li + 1}: bad lifetime {lt!r}")
            out.append(Arrival(len(out), t, fl, end, batch))
    if len(out) != TOTAL_VMS or n_u != U_COUNT or n_c != C_COUNT:
        raise _refuse(f"{len(out)} VMs ({n_u} U, {n_c} C), not {TOTAL_VMS} ({U_COUNT} U, {C_COUNT} C)")
    if lines is not None:
        last_t = FIRST_T + (lines - 1) * STEP
        out = [a for a in out if a.t <= last_t]
    return out


def memory_overhead(vcpus: int, static_max: int) -> int:
    """model.md §1.3: 4 MiB + vcpus × 1 MiB + static-max / 128, rounded up to a whole MiB."""
    mib = 1024 * 1024
    raw = 4 * mib + vcpus * mib + static_max / 128
    return int(-(-raw // mib)) * mib


def events(arrivals: list[Arrival]):
    """(kind, index) in replay order: per line, departures due by its time (by end, then index)
    before its arrivals in file order; departures after the last line are not needed. Indexes are
    positions in `arrivals` (a prefix of the trace keeps them)."""
    import heapq

    heap: list[tuple[float, int]] = []
    i = 0
    n = len(arrivals)
    while i < n:
        t = arrivals[i].t
        while heap and heap[0][0] <= t:
            yield "d", heapq.heappop(heap)[1]
        while i < n and arrivals[i].t == t:
            a = arrivals[i]
            yield "a", i
            if a.end is not None:
                heapq.heappush(heap, (a.end, i))
            i += 1


def peak_snapshot(arrivals: list[Arrival]) -> tuple[int, list[Arrival]]:
    """The VMs alive (arrived at or before t, ending after t) at the first instant where total
    alive memory (flavor memory) is maximal. Departures only lower the total, so the instants to
    consider are the arrival times; within one instant the total only grows, so checking after
    every arrival finds the same first maximal instant."""
    alive_mem = 0
    best_t, best_mem = None, -1
    for kind, i in events(arrivals):
        a = arrivals[i]
        if kind == "d":
            alive_mem -= a.flavor.memory
            continue
        alive_mem += a.flavor.memory
        if alive_mem > best_mem:
            best_t, best_mem = a.t, alive_mem
    assert best_t is not None
    alive = [a for a in arrivals if a.t <= best_t and (a.end is None or a.end > best_t)]
    return best_t, alive
