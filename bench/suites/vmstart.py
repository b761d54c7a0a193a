"""One `vm-start` in a fresh process on a large inventory: median wall time against `python -c pass`
run by the same interpreter in the same run, with `vm-list --minimal` and `vm-param-get` beside it
(read paths that never open the inventory through SQLAlchemy), and the floor of any command that
does: a process importing SQLAlchemy, and SQLAlchemy with NumPy (which placement needs).

The inventory: one pool of H hosts (32 cores, 256 GiB) and V VMs of 32 random flavours, 90% of
them started round-robin over the hosts, built through the command functions in one transaction
(without `vmctl demo`). Each timed vm-start starts another halted VM, on the host the engine
chooses. Then the halted VMs get a VIF on the pool's network, so that every placement asks which
hosts have that network (each host's switch rows), and vm-start is timed again.

Scenarios: ci = 100 hosts / 1,500 VMs, S1 = 1,000 / 15,000 (default), S2 = 2,500 / 40,000.
The target (vm-start ≤ 10× python -c pass) is a timing goal: reported, never gated in ci.
Bytecode is written to a private cache during the untimed first run of each command, as an
installed package has it (PYTHONDONTWRITEBYTECODE is dropped, PYTHONPYCACHEPREFIX set).
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench import common

SUITE = "vmstart"
DEFAULT_SCENARIO = "S1"
SCENARIOS = ("ci", "S1", "S2")
SIZES = {"ci": (100, 1500), "S1": (1000, 15000), "S2": (2500, 40000)}
TARGET = 10.0  # vm-start ≤ TARGET × python -c pass
RUNNING = 0.9  # share of the VMs started by the build
OPTS = {"yes": True, "quiet": True}


def flavours(seed: int) -> list[tuple[int, int]]:
    """32 (vcpus, memory GiB) flavours."""
    rng = random.Random(seed)
    pairs = {(rng.choice((1, 2, 4, 8)), rng.choice((1, 2, 3, 4, 6, 8, 12, 16))) for _ in range(200)}
    return sorted(pairs)[:32]


def build(db: str, hosts: int, vms: int, seed: int) -> list[str]:
    """The inventory, in one transaction through the command functions; the names of the VMs
    left halted."""
    from vmctl.runner import invoke
    from vmctl.store.txn import Store
    from vmctl.units import UuidSource

    rng = random.Random(seed)
    shapes = flavours(seed)
    store = Store(db, uuids=UuidSource(f"bench-vmstart:{seed}"))

    def body(txn):
        invoke(txn, "pool-create", ["name-label=bench"], OPTS)
        host_uuids = common.add_hosts(txn, hosts, OPTS)
        names, uuids = [], []
        for i in range(vms):
            vcpus, gib = rng.choice(shapes)
            names.append(f"vm{i:06d}")
            args = [f"name-label={names[-1]}", f"vcpus={vcpus}", f"memory={gib}GiB"]
            uuids.append(invoke(txn, "vm-create", args, OPTS).value)
        # after every create: a run of starts keeps one placement snapshot current
        running = int(vms * RUNNING)
        for i, vm in enumerate(uuids[:running]):
            invoke(txn, "vm-start", [f"vm={vm}", f"on={host_uuids[i % hosts]}"], OPTS)
        return names[running:]

    halted = store.run(body, True, finish=lambda txn: store.append_journal(txn, "bench build"))[0]
    store.dispose()
    return halted


def add_vifs(db: str, names: list[str]) -> None:
    """A VIF on the pool's network for each of these VMs (explicit MACs: a generated one is
    checked against every MAC of the pool)."""
    from vmctl.runner import invoke
    from vmctl.store.txn import Store

    store = Store(db)

    def body(txn):
        net = txn.all("pif")[0]["network"]
        for i, name in enumerate(names):
            vm = txn.resolve_one("vm", name)["uuid"]
            mac = f"02:76:6d:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
            invoke(
                txn, "vif-create", [f"vm-uuid={vm}", f"network-uuid={net}", "device=0", f"mac={mac}"], OPTS
            )

    store.run(body, True, finish=lambda txn: store.append_journal(txn, "bench vifs"))
    store.dispose()


def _time(argvs, env: dict) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system) of whole processes, one per argv.
    The CPU time tells a loaded machine's waits apart from the work."""
    walls, cpus = [], []
    for argv in argvs:
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run(
            [sys.executable, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        walls.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        if p.returncode:
            raise RuntimeError(f"{argv}: {p.stderr.decode(errors='replace').strip()}")
    return statistics.median(walls), statistics.median(cpus)


def run(ctx: common.Context) -> common.SuiteResult:
    hosts, vms = SIZES[ctx.scenario]
    res = common.SuiteResult(SUITE, ctx.scenario)
    tmp = tempfile.mkdtemp(prefix="vmctl-bench-vmstart-")
    try:
        db = os.path.join(tmp, "inv.db")
        t0 = time.perf_counter()
        halted = build(db, hosts, vms, ctx.seed)
        build_s = time.perf_counter() - t0
        env = common.process_env(tmp)
        env["VMCTL_DB"] = db
        n = max(5, ctx.repeat)
        uuid = subprocess.run(
            [sys.executable, "-m", "vmctl", "vm-list", "name-label=vm000001", "--minimal"],
            env=env,
            capture_output=True,
            text=True,
        ).stdout.strip()
        plain, with_vif = iter(halted[: n + 1]), halted[n + 1 :]

        def vm_start(k: int, names=plain) -> list[list[str]]:
            return [["-m", "vmctl", "vm-start", f"vm={next(names)}"] for _ in range(k)]

        rows = [
            ("python -c pass", lambda k: [["-c", "pass"]] * k),
            ("import sqlalchemy", lambda k: [["-c", "import sqlalchemy"]] * k),
            ("import sqlalchemy, numpy", lambda k: [["-c", "import sqlalchemy, numpy"]] * k),
            ("vm-start", vm_start),
            ("vm-list --minimal", lambda k: [["-m", "vmctl", "vm-list", "--minimal"]] * k),
            (
                "vm-param-get",
                lambda k: (
                    [["-m", "vmctl", "vm-param-get", f"uuid={uuid}", "param-name=memory-static-max"]] * k
                ),
            ),
        ]
        m: dict = {"build (s)": round(build_s, 1)}
        base: tuple[float, float] | None = None

        def measure(label: str, argvs) -> None:
            nonlocal base
            _time(argvs(1), env)  # untimed: writes the bytecode, warms the file cache
            wall, cpu = _time(argvs(n), env)
            base = base or (wall, cpu)
            m[f"{label} (s)"] = round(wall, 4)
            m[f"{label} (×)"] = round(wall / base[0], 2)
            m[f"{label} (cpu ×)"] = round(cpu / base[1], 2)

        for label, argvs in rows:
            measure(label, argvs)
        add_vifs(db, with_vif)
        names = iter(with_vif)
        measure("vm-start, VIF on the pool network", lambda k: vm_start(k, names))
        ratio = m["vm-start (×)"]
        res.goals.append(
            common.Goal(
                "V1",
                f"vm-start ≤ {TARGET:g}× python -c pass ({hosts} hosts, {vms} VMs)",
                ratio,
                ratio <= TARGET,
                "timing" if vms == 15000 else "info",
            )
        )
        res.engines["vmctl"] = m
        res.timing = set(m)
        res.notes.append(
            f"{hosts} hosts, {vms} VMs ({int(vms * RUNNING)} running); medians of {n} runs; "
            f"interpreter {sys.executable}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res
