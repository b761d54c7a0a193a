"""Migrations of a real Linux guest on the lab against the engine's pre-copy model (engine.md §4.2,
drivers.md §6 tier 3): predicted and measured total time, downtime and bytes, side by side.

A lab of two hosts is brought up for the run (`vmctl lab up`: root, the lab's packages, no lab
already up; otherwise the suite says why and measures nothing) and taken down at the end. The
guest is bench/linuxguest: a Debian kernel and a busybox initramfs under software emulation, its
memory filled, dirtying distinct pages at a set rate (0, 8, 32, 128 MiB/s, on its kernel command
line). One guest per dirty rate boots on lab1 and is moved back and forth between the hosts with
`vm-migrate bandwidth=R`, once per bandwidth; the VM's `other-config:dirty-rate` tells the engine
the rate, so the prediction vm-migrate records in `other-config:last-migration` is the model's for
exactly that guest. A case the model says would not converge is not run (vm-migrate refuses it,
and QEMU, which has no round limit, would copy for ever).

Per case the table gives the prediction, the measurement (libvirt's completed-job statistics)
and the relative error |predicted − measured| / measured; the figure of merit is

    median relative error of total time over the cases      target ≤ 15%   (quality)

with downtime's and bytes' medians beside it (information: the downtime of a guest under software
emulation on a busy machine varies from run to run by more than the model's terms). The
predictions use the lab's calibration of the model (CALIBRATION below: set on the lab's pool for
the run, removed afterwards); each case also gets the model's prediction without it, from the same
inputs, and the run fits the calibration its own figures give (`fit`), printed next to the one used.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bench import common

SUITE = "migrate-real"
DEFAULT_SCENARIO = "ci"
SCENARIOS = ("ci",)
TARGET = 0.15  # median relative error of total time
MiB = 1024**2
MEMORY_MIB = 256
DOWNTIME = 0.3  # s, the pool's default target

# (dirty rate, bandwidth) in MiB/s. Every rate at three bandwidths, where the model converges.
CASES = (
    (0, 32),
    (0, 64),
    (0, 128),
    (8, 32),
    (8, 64),
    (8, 128),
    (32, 64),
    (32, 128),
    (32, 256),
    (128, 256),
)
# The lab tier's reduced set: three guests, five migrations, at bandwidths the lab's hosts sustain
# even on a busy machine (at 128 MiB/s and above a load of 8 on the 2 cores made them stream at
# 65–80% of the rate allowed, an error of the machine the model is not asked to know).
LAB_CASES = ((0, 32), (0, 64), (8, 32), (8, 64), (32, 64))

# The model's calibration for the lab's guests, fitted from this suite's measurements (`fit`):
# the share of the guest's memory holding data (the rest, zero pages, costs QEMU a few bytes
# each: here the memory the kernel keeps for itself, of which this workload fills none), the
# time a migration spends besides streaming memory, and the fixed part of the downtime.
CALIBRATION = {
    "migration-memory-fraction": 0.89,
    "migration-setup-time": 0.35,
    "migration-resume-time": 0.05,
    "migration-max-rate": "190MiB/s",
}
SUSTAINED = 128  # MiB/s: above this the lab's hosts (TCG guests, 2 shared cores) fall short

Vmctl = Callable[..., str]  # runs vmctl with these arguments, returns its stdout, raises on failure


@dataclass
class Measured:
    """One migration: its inputs, the engine's prediction, libvirt's measurement."""

    dirty: float  # MiB/s the guest was told to dirty
    bandwidth: float  # MiB/s
    guest_dirty: float | None  # MiB/s the guest said it dirtied just before
    predicted: dict
    measured: dict
    uncalibrated: dict = field(default_factory=dict)

    def error(self, key: str, uncalibrated: bool = False) -> float | None:
        p = (self.uncalibrated if uncalibrated else self.predicted).get(key)
        m = self.measured.get(key)
        if p is None or not m:
            return None
        return abs(p - m) / m


# --- the guest's console ---------------------------------------------------------------------------
def console_lines(uri: str, name: str, until: Callable[[str], bool], timeout: float) -> list[str]:
    """The lines the guest writes on its serial console (read through libvirt on the host that
    runs it) from now until one satisfies `until`; TimeoutError with what was read otherwise.

    A blocking stream read in a thread of its own: a non-blocking one would need an event loop
    running in this process for the remote driver to deliver anything."""
    import queue
    import threading

    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # the stream's end is not news
    conn = libvirt.open(uri)
    stream = conn.newStream(0)
    chunks: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            while got := stream.recv(4096):
                chunks.put(got)
        except libvirt.libvirtError:
            pass  # aborted below, or the guest went away
        chunks.put(None)

    text = ""
    try:
        conn.lookupByName(name).openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        reader = threading.Thread(target=read, name="vmctl-bench-console", daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                got = chunks.get(timeout=left)
            except queue.Empty:
                break
            if got is None:
                break
            text += got.decode(errors="replace") if isinstance(got, bytes) else ""
            lines = text.replace("\r", "").split("\n")
            for i, line in enumerate(lines[:-1]):
                if until(line):
                    return lines[: i + 1]
    finally:
        try:
            stream.abort()
        except libvirt.libvirtError:
            pass
        conn.close()
    raise TimeoutError(f"no such line on {name}'s console within {timeout:g} s; read: {text[-400:]!r}")


def guest_status(uri: str, name: str, timeout: float = 60) -> dict:
    """The workload's next status line, parsed: rate, measured, pages, corrupt."""
    # a line read from its start to its end (the console may be joined mid-line)
    line = console_lines(uri, name, lambda s: s.startswith("dirty: ready ") and "corrupt=" in s, timeout)[-1]
    fields = {}
    for word in line.split():
        if "=" in word:
            k, v = word.split("=", 1)
            fields[k] = float(v)
    return fields


# --- the measurement ---------------------------------------------------------------------------------
def measure(
    vmctl: Vmctl,
    cases: Iterable[tuple[float, float]],
    memory_mib: int = MEMORY_MIB,
    calibration: dict | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Measured]:
    """Every case on the lab that `vmctl` drives: one guest per dirty rate, started on lab1 and
    migrated to the other host once per bandwidth, with the model's `calibration` (default
    CALIBRATION) set on the pool first. Guests are removed afterwards, whatever happened."""
    from bench import linuxguest

    guest = linuxguest.build()
    cal = CALIBRATION if calibration is None else calibration
    if cal:
        vmctl("pool-param-set", "uuid=lab", *(f"other-config:{k}={v}" for k, v in cal.items()))
    try:
        return _measure(vmctl, guest, cases, memory_mib, log)
    finally:
        if cal:  # the pool as it was: other migrations on the lab are not this guest's
            words = [
                w
                for k in cal
                for w in ("--", "pool-param-remove", "uuid=lab", "param-name=other-config", f"param-key={k}")
            ]
            vmctl(*words[1:])


def _measure(vmctl: Vmctl, guest, cases, memory_mib: int, log) -> list[Measured]:
    hosts = {
        h["name-label"]: h["driver-uri"]
        for h in json.loads(vmctl("-f", "json", "host-list", "pool=lab", "params=name-label,driver-uri"))
    }
    by_rate: dict[float, list[float]] = {}
    for dirty, bandwidth in cases:
        by_rate.setdefault(dirty, []).append(bandwidth)
    results = []
    for dirty, bandwidths in by_rate.items():
        vm = vmctl(
            "--id=@g",
            "vm-create",
            f"name-label=dirty-{dirty:g}",
            f"memory={memory_mib}MiB",
            "pool=lab",
            "--",
            "vm-param-set",
            "uuid=@g",
            "other-config:emulation=tcg",
            f"other-config:kernel={guest.kernel}",
            f"other-config:initrd={guest.initrd}",
            f"other-config:kernel-args={guest.cmdline(dirty)}",
            # the engine's input: the rate the guest dirties distinct pages at
            f"other-config:dirty-rate={dirty:g}MiB/s",
            "--",
            "vm-start",
            "vm=@g",
            "on=lab1",
            "--minimal",
        ).split()[0]
        try:
            where = "lab1"
            status = guest_status(hosts[where], vm, timeout=120)
            if log:
                log(f"guest dirty={dirty:g} MiB/s up on {where}: {status}")
            for bandwidth in bandwidths:
                status = guest_status(hosts[where], vm)
                to = "lab2" if where == "lab1" else "lab1"
                out = vmctl(
                    "-f", "json", "vm-migrate", f"vm={vm}", f"host={to}", f"bandwidth={bandwidth:g}MiB/s"
                )
                data = json.loads(out)
                where = to
                try:
                    after = guest_status(hosts[where], vm)
                except TimeoutError as e:
                    raise TimeoutError(f"{e}; after the migration: {_whereabouts(hosts, vm)}") from None
                if after.get("corrupt"):
                    raise RuntimeError(f"the guest's memory came through the migration wrong: {after}")
                if after.get("pages", 0) < status.get("pages", 0):
                    raise RuntimeError(f"the guest restarted after the migration: {status}, then {after}")
                m = Measured(dirty, bandwidth, status.get("measured"), data["predicted"], data["measured"])
                m.uncalibrated = uncalibrated(memory_mib, dirty, bandwidth)
                results.append(m)
                if log:
                    log(f"  R={bandwidth:g} MiB/s: predicted {m.predicted} measured {m.measured}")
        finally:
            vmctl("vm-uninstall", f"vm={vm}", "--force")
    return results


def _whereabouts(hosts: dict[str, str], vm: str) -> dict[str, str]:
    """The guest's state on every host, by libvirt (for a report when it stopped answering)."""
    import libvirt

    out = {}
    for name, uri in hosts.items():
        conn = libvirt.open(uri)
        try:
            state, reason = conn.lookupByName(vm).state()
            out[name] = f"state {state} reason {reason}"
        except libvirt.libvirtError:
            pass
        finally:
            conn.close()
    return out


def uncalibrated(memory_mib: float, dirty: float, bandwidth: float) -> dict:
    """The model's prediction for the same inputs with none of the lab's calibration."""
    from vmctl.engine.migration import Limits, predict

    p = predict(memory_mib * MiB, dirty * MiB, bandwidth * MiB, Limits(downtime=DOWNTIME), with_hints=False)
    return {"total-time": p.total_time, "downtime": p.downtime, "bytes": p.bytes, "rounds": p.rounds}


def fit(results: list[Measured], memory_mib: int = MEMORY_MIB) -> dict[str, float]:
    """The calibration these measurements give, each figure a median over cases (robust to the
    odd migration slowed by the machine's other work):

    * memory fraction f = measured bytes / the uncalibrated model's bytes (exact when the rounds
      agree: the model's bytes are linear in M);
    * resume time Tr = measured downtime − the downtime predicted on f·M;
    * setup time Ts = measured total time − the total time predicted on f·M − Tr, over the cases
      whose bandwidth the hosts sustain (R ≤ 128 MiB/s);
    * the stream's ceiling C = measured bytes / (measured total time − Ts − Tr) over the faster
      cases, when there are any.
    """
    from vmctl.engine.migration import Limits, predict

    if not results:
        return {}
    f = min(1.0, statistics.median(r.measured["bytes"] / r.uncalibrated["bytes"] for r in results))

    def on_f(r: Measured):
        return predict(
            memory_mib * MiB, r.dirty * MiB, r.bandwidth * MiB, Limits(DOWNTIME, memory_fraction=f)
        )

    tr = max(0.0, statistics.median((r.measured.get("downtime") or 0) - on_f(r).downtime for r in results))
    slow = [r for r in results if r.bandwidth <= SUSTAINED] or results
    ts = max(0.0, statistics.median(r.measured["total-time"] - on_f(r).total_time - tr for r in slow))
    out = {"migration-memory-fraction": round(f, 3), "migration-setup-time": round(ts, 2)}
    out["migration-resume-time"] = round(tr, 3)
    fast = [r for r in results if r.bandwidth > SUSTAINED and r.measured["total-time"] > ts + tr]
    if fast:
        c = statistics.median(r.measured["bytes"] / (r.measured["total-time"] - ts - tr) for r in fast)
        out["migration-max-rate"] = f"{c / MiB:.0f}MiB/s"
    return out


def median_error(results: list[Measured], key: str, uncalibrated: bool = False) -> float | None:
    errors = [e for r in results if (e := r.error(key, uncalibrated)) is not None]
    return statistics.median(errors) if errors else None


def rows(results: list[Measured]) -> dict[str, dict]:
    """One table row per case: inputs, predicted / measured figures and relative errors."""
    out = {}
    for r in results:
        p, m = r.predicted, r.measured
        out[f"D {r.dirty:g} MiB/s, R {r.bandwidth:g} MiB/s"] = {
            "guest D (MiB/s)": r.guest_dirty,
            "total pred (s)": round(p["total-time"], 3),
            "total meas (s)": round(m["total-time"], 3),
            "total err": _pct(r.error("total-time")),
            "uncal. total (s)": round(r.uncalibrated.get("total-time", 0), 3),
            "uncal. err": _pct(r.error("total-time", uncalibrated=True)),
            "down pred (ms)": round(p["downtime"] * 1000),
            "down meas (ms)": round((m.get("downtime") or 0) * 1000),
            "down err": _pct(r.error("downtime")),
            "MiB pred": round(p["bytes"] / MiB, 1),
            "MiB meas": round(m["bytes"] / MiB, 1),
            "bytes err": _pct(r.error("bytes")),
            "rounds pred/meas": f"{p.get('rounds')}/{m.get('rounds')}",
        }
    return out


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


# --- the suite ----------------------------------------------------------------------------------------
def _load() -> str:
    """The machine's 1-minute load average: a busy machine streams slower than the rates asked."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    for tool in ("gcc", "apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (the guest is built from Debian packages with gcc)"
    return None


def run(ctx: common.Context) -> common.SuiteResult:
    res = common.SuiteResult(SUITE, ctx.scenario)
    why = _why_not()
    if why:
        res.notes.append(f"not measured: {why}")
        return res
    tmp = tempfile.mkdtemp(prefix="vmctl-bench-migrate-real-")
    os.chmod(tmp, 0o755)  # QEMU in the lab's hosts runs unprivileged and must reach DIR
    env = common.process_env(tmp)  # each command in its own process: no manager outliving the run
    if "VMCTL_GUEST_CACHE" in os.environ:
        env["VMCTL_GUEST_CACHE"] = os.environ["VMCTL_GUEST_CACHE"]
    env["VMCTL_DB"] = os.path.join(tmp, "inv.db")

    def vmctl(*args: str) -> str:
        p = subprocess.run(
            [sys.executable, "-m", "vmctl", *args], env=env, capture_output=True, text=True, timeout=900
        )
        if p.returncode != 0:
            raise RuntimeError(f"vmctl {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout.strip()

    started, load_before = time.perf_counter(), _load()
    try:
        up = subprocess.run(
            [sys.executable, "-m", "vmctl", "lab", "up", "--dir", os.path.join(tmp, "lab")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if up.returncode != 0:
            res.notes.append(f"not measured: lab up failed: {up.stderr.strip().splitlines()[0]}")
            return res
        results = measure(vmctl, CASES, log=lambda s: print(s, file=sys.stderr, flush=True))
    finally:
        subprocess.run(
            [sys.executable, "-m", "vmctl", "lab", "down"], env=env, capture_output=True, timeout=300
        )
        shutil.rmtree(tmp, ignore_errors=True)
    res.engines = rows(results)
    res.timing = set().union(*(set(r) for r in res.engines.values())) if res.engines else set()
    total = median_error(results, "total-time")
    res.goals.append(
        common.Goal(
            "M-total",
            f"median relative error of total time ≤ {TARGET:.0%}",
            _pct(total),
            total is not None and total <= TARGET,
            "quality",
        )
    )
    for key, label in (("downtime", "downtime"), ("bytes", "bytes")):
        e = median_error(results, key)
        res.goals.append(
            common.Goal(f"M-{label}", f"median relative error of {label}", _pct(e), True, "info")
        )
    e = median_error(results, "total-time", uncalibrated=True)
    res.goals.append(
        common.Goal("M-total-uncal", "the same without the lab's calibration", _pct(e), True, "info")
    )
    res.notes.append(
        "calibration used: "
        + ", ".join(f"{k} {v}" for k, v in CALIBRATION.items())
        + "; fitted from this run: "
        + ", ".join(f"{k} {v}" for k, v in fit(results).items())
    )
    res.notes.append(
        f"{len(results)} migrations of a {MEMORY_MIB} MiB Linux guest (TCG) in "
        f"{time.perf_counter() - started:.0f} s, downtime target {DOWNTIME * 1000:g} ms; the machine's "
        f"load (1 min) {load_before} before, {_load()} after, on {os.cpu_count()} cores"
    )
    return res
