"""Shared benchmark plumbing: the run context, goals, results, timing summaries and the
markdown/JSON writers of engine.md §8.1. Suites (bench/suites/*.py) expose ``SUITE``,
``DEFAULT_SCENARIO``, ``SCENARIOS`` and ``run(ctx) -> SuiteResult``; run.py discovers them."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "vmctl-bench/1"
WARMUP = 1000  # first decisions excluded from timings (§8.2)


@dataclass
class Context:
    """What a suite gets: scenario (``ci``, ``S1``, ``S2``, ``C96``), seed, repeat, engines (None =
    the suite's default list), trace_dir, out, reference (check absolute goals), check (gate)."""

    scenario: str
    seed: int = 1
    repeat: int = 1
    engines: list[str] | None = None
    trace_dir: Path | None = None
    out: Path | None = None
    reference: bool = False
    check: bool = True

    @property
    def ci(self) -> bool:
        return self.scenario == "ci"

    def engines_or(self, default: list[str]) -> list[str]:
        return list(self.engines) if self.engines else list(default)


@dataclass
class Goal:
    """One target. kind: ``quality`` (always gated), ``timing`` (ratio; not gated in ``ci``),
    ``absolute`` (reference-machine figure; gated only with ``--reference``), ``info`` (never
    gated: e.g. a ratio that is mathematically unattainable at the ci scale)."""

    id: str
    target: str
    value: Any
    passed: bool
    kind: str = "quality"

    def checked(self, ctx: Context) -> bool:
        if not ctx.check:
            return False
        if self.kind == "quality":
            return True
        if self.kind == "timing":
            return not ctx.ci
        if self.kind == "absolute":
            return ctx.reference
        return False

    def to_json(self, ctx: Context) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": self.target,
            "value": self.value,
            "pass": bool(self.passed),
            "kind": self.kind,
            "checked": self.checked(ctx),
        }


@dataclass
class SuiteResult:
    """engines: name → {metric: value}; timing: metric names that are timings (everything else is
    a quality field, identical across runs with the same seed); goals; lower_bound; notes."""

    suite: str
    scenario: str
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)
    goals: list[Goal] = field(default_factory=list)
    lower_bound: Any = None
    timing: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def quality(self) -> dict[str, Any]:
        """The fields that must be identical across runs and repeats with the same seed."""
        eng = {e: {k: v for k, v in m.items() if k not in self.timing} for e, m in self.engines.items()}
        goals = [(g.id, g.value, g.passed) for g in self.goals if g.kind == "quality"]
        return {"engines": eng, "goals": goals, "lower-bound": self.lower_bound}

    def ok(self, ctx: Context) -> bool:
        return all(g.passed for g in self.goals if g.checked(ctx))


def process_env(tmp: str, manager: bool = False) -> dict[str, str]:
    """The environment of a timed vmctl process: this one's without VMCTL_* settings, with
    bytecode cached in TMP/pycache. An installed vmctl has its bytecode (pip compiles it); a
    PYTHONDONTWRITEBYTECODE inherited from a sandbox would make every process compile vmctl's
    modules from source again (0.2–0.3 s here) and time that instead. Each command runs in its
    own process (VMCTL_DAEMON=off) unless `manager`: then in the inventory's manager, whose socket
    is beside the inventory (no XDG_RUNTIME_DIR), so that it goes with the run's directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMCTL_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
    env["VMCTL_DAEMON"] = "on" if manager else "off"
    if manager:
        env.pop("XDG_RUNTIME_DIR", None)
    return env


def start_manager(env: dict[str, str], timeout: float = 300.0) -> int:
    """Start the manager of env's inventory as a first command does, wait until it serves, and
    return its pid (stop it with stop_manager)."""
    import time

    vmctl = [sys.executable, "-m", "vmctl"]
    quiet = {"env": env, "stdin": subprocess.DEVNULL, "capture_output": True, "text": True}
    subprocess.run([*vmctl, "vm-list", "params=uuid", "--minimal"], **quiet)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run([*vmctl, "daemon", "status"], **quiet).stdout
        if out.startswith("manager: running"):
            return int(out.split("pid: ", 1)[1].split()[0])
        time.sleep(0.2)
    raise RuntimeError("the manager did not start")


def stop_manager(env: dict[str, str], pid: int) -> None:
    """Stop the manager start_manager started (by pid, if `daemon stop` did not end it)."""
    import signal

    p = subprocess.run([sys.executable, "-m", "vmctl", "daemon", "stop"], env=env, capture_output=True)
    if p.returncode != 0:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def add_hosts(txn, hosts: int, opts: dict, pool: str = "bench") -> list[str]:
    """Hosts h00000.. of 32 cores and 256 GiB in `pool`, one address each (the inventories that
    time whole vmctl processes); their uuids."""
    from vmctl.runner import invoke

    return [
        invoke(
            txn,
            "host-add",
            [
                f"name-label=h{i:05d}",
                f"address=10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                "cpu-count=32",
                "memory-total=256GiB",
                f"pool={pool}",
            ],
            opts,
        ).value
        for i in range(hosts)
    ]


def quiesce() -> None:
    """Before a timed run: collect garbage, then freeze every surviving object (the scenario) into
    the permanent generation, so a full collection never walks the inventory in the middle of a
    timed decision. Applied to every engine alike."""
    import gc

    gc.collect()
    gc.freeze()


def timing_summary(ns: list[int], warmup: int = WARMUP) -> dict[str, float]:
    """decisions/s over the measured decisions, p50 and p99 in µs (first ``warmup`` excluded, or
    none when there are too few decisions to spare them)."""
    xs = ns[warmup:] if len(ns) > 2 * warmup else ns[len(ns) // 4 :]
    if not xs:
        return {"decisions/s": 0.0, "p50-us": 0.0, "p99-us": 0.0}
    s = sorted(xs)
    total = sum(s)
    p = lambda q: s[min(len(s) - 1, int(q * len(s)))] / 1000.0  # noqa: E731
    return {
        "decisions/s": round(len(s) / (total / 1e9), 1) if total else 0.0,
        "p50-us": round(p(0.50), 1),
        "p99-us": round(p(0.99), 1),
    }


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = runs[0].keys()
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}


def load_spread(loads: Iterable[tuple[float, float]]) -> dict[str, float]:
    """The spreading figures of a placement, over every host of the fleet, loads as fractions of
    capacity ((memory, vCPU) per host): the lowest and highest memory load, and per dimension the
    population standard deviation σ_d, the imbalance measure of pool-rebalance (engine.md §5). A
    spreading policy keeps σ small; a dense one leaves hosts empty (min 0)."""
    mem, cpu = [], []
    for m, c in loads:
        mem.append(m)
        cpu.append(c)
    if not mem:
        return {"mem-load-min": 0.0, "mem-load-max": 0.0, "sigma-memory": 0.0, "sigma-vcpu": 0.0}
    return {
        "mem-load-min": round(min(mem), 3),
        "mem-load-max": round(max(mem), 3),
        "sigma-memory": round(statistics.pstdev(mem), 4),
        "sigma-vcpu": round(statistics.pstdev(cpu), 4),
    }


def table_loads(table: Any) -> list[tuple[float, float]]:
    """(memory, vCPU) load fractions per host of an engine HostTable."""
    mem = (table.mem / table.mem_cap_f).tolist()
    cpu = (table.vcpu / table.vcpu_cap_f).tolist()
    return list(zip(mem, cpu))


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import numpy

        npv = numpy.__version__
    except ImportError:  # pragma: no cover
        npv = None
    try:
        from importlib.metadata import version

        vv = version("vmctl")
    except Exception:
        vv = None
    commit = None
    try:
        root = Path(__file__).resolve().parent.parent
        commit = (
            subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except Exception:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": npv,
        "vmctl": vv,
        "git-commit": commit,
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.1f}"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return "" if v is None else str(v)


def markdown(res: SuiteResult, ctx: Context) -> str:
    lines = [f"## {res.suite} — scenario {res.scenario}, seed {ctx.seed}, repeat {ctx.repeat}", ""]
    if res.lower_bound is not None:
        lines += [f"Lower bound: {_fmt(res.lower_bound)}", ""]
    metrics: list[str] = []
    for m in res.engines.values():
        for k in m:
            if k not in metrics:
                metrics.append(k)
    if res.engines:
        lines.append("| engine | " + " | ".join(metrics) + " |")
        lines.append("|---|" + "---|" * len(metrics))
        for e, m in res.engines.items():
            lines.append(f"| {e} | " + " | ".join(_fmt(m.get(k)) for k in metrics) + " |")
        lines.append("")
    if res.goals:
        lines.append("| id | target | value | pass |")
        lines.append("|---|---|---|---|")
        for g in res.goals:
            flag = (
                ("PASS" if g.passed else "FAIL")
                if g.checked(ctx)
                else ("pass" if g.passed else "fail") + " (not gated)"
            )
            lines.append(f"| {g.id} | {g.target} | {_fmt(g.value)} | {flag} |")
        lines.append("")
    for n in res.notes:
        lines.append(f"* {n}")
    if res.notes:
        lines.append("")
    return "\n".join(lines)


def to_json(res: SuiteResult, ctx: Context) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "suite": res.suite,
        "scenario": res.scenario,
        "seed": ctx.seed,
        "repeat": ctx.repeat,
        "machine": machine(),
        "lower-bound": res.lower_bound,
        "engines": res.engines,
        "goals": [g.to_json(ctx) for g in res.goals],
        "notes": res.notes,
    }


def write(res: SuiteResult, ctx: Context) -> str:
    md = markdown(res, ctx)
    if ctx.out is not None:
        ctx.out.mkdir(parents=True, exist_ok=True)
        stem = ctx.out / f"{res.suite}-{res.scenario}-s{ctx.seed}"
        stem.with_suffix(".json").write_text(json.dumps(to_json(res, ctx), indent=2, sort_keys=False) + "\n")
        stem.with_suffix(".md").write_text(md + "\n")
    return md
