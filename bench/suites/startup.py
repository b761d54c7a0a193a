"""Start-up and batch figures of the foundation (and completion) targets: median wall time of
whole `vmctl` processes against `python -c pass` run by the same interpreter, measured in the
same run, on an inventory of H hosts and V VMs; and one batch of V vm-creates.

Scenarios: ci = 100 hosts / 1,500 VMs, S1 = 1,000 / 15,000, S2 = 2,500 / 40,000. Timing ratios
are reported, never gated in ci (engine.md §7).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench import common

SUITE = "startup"
DEFAULT_SCENARIO = "ci"
SCENARIOS = ("ci", "S1", "S2")
SIZES = {"ci": (100, 1500), "S1": (1000, 15000), "S2": (2500, 40000)}

# (label, argv after the interpreter, target ratio or None, goal id)
COMMANDS = [
    ("vmctl --version", ["-m", "vmctl", "--version"], 3.0, "F1"),
    ("vm-list --minimal", ["-m", "vmctl", "vm-list", "--minimal"], 6.0, "F2"),
    ("vm-list -f json", ["-m", "vmctl", "vm-list", "-f", "json"], 12.0, "F3"),
    ("vdi-list --minimal", ["-m", "vmctl", "vdi-list", "--minimal"], None, "S1"),
    ("vm-param-get", None, None, "F5"),
    ("vm-create", ["-m", "vmctl", "vm-create", "name-label=bench-new"], 25.0, "F4"),
    ("completion (vm-start vm=<TAB>)", ["-m", "vmctl", "__complete", "bash", "vm-start", "vm="], 3.0, "C1"),
]


def build(db: str, hosts: int, vms: int, seed: int) -> float:
    """The inventory, built in one transaction through the command functions."""
    from vmctl.runner import invoke
    from vmctl.store.txn import Store
    from vmctl.units import UuidSource

    t0 = time.perf_counter()
    store = Store(db, uuids=UuidSource(f"bench:{seed}"))

    def body(txn):
        o = {"yes": True, "quiet": True}
        invoke(txn, "pool-create", ["name-label=bench"], o)
        for i in range(hosts):
            invoke(
                txn,
                "host-add",
                [
                    f"name-label=h{i:05d}",
                    f"address=10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                    "cpu-count=32",
                    "memory-total=256GiB",
                    "pool=bench",
                ],
                o,
            )
        for i in range(vms):
            invoke(
                txn, "vm-create", [f"name-label=vm{i:06d}", f"memory={1 + i % 8}GiB", f"vcpus={1 + i % 4}"], o
            )
        # as many virtual disks as VMs, on one shared SR (the vdi-list --minimal figure)
        sr = invoke(txn, "sr-create", ["name-label=shared", "type=nfs", "physical-size=1000TiB"], o).value
        for i in range(vms):
            invoke(txn, "vdi-create", [f"sr-uuid={sr}", f"name-label=disk{i:06d}", "virtual-size=20GiB"], o)

    store.run(body, True, finish=lambda txn: store.append_journal(txn, "bench build"))
    store.dispose()
    return time.perf_counter() - t0


def _time(argv: list[str], env: dict, n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def run(ctx: common.Context) -> common.SuiteResult:
    hosts, vms = SIZES[ctx.scenario]
    res = common.SuiteResult(SUITE, ctx.scenario)
    tmp = tempfile.mkdtemp(prefix="vmctl-bench-")
    try:
        db = os.path.join(tmp, "inv.db")
        build_s = build(db, hosts, vms, ctx.seed)
        env = common.process_env(tmp)
        env["VMCTL_DB"] = db
        n = max(5, ctx.repeat)
        base = _time(["-c", "pass"], env, n)
        m = {"python -c pass (s)": round(base, 4), "build (s)": round(build_s, 2)}
        vm_uuid = subprocess.run(
            [sys.executable, "-m", "vmctl", "vm-list", "name-label=vm000001", "--minimal"],
            env=env,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for label, argv, target, gid in COMMANDS:
            if argv is None:
                argv = ["-m", "vmctl", "vm-param-get", f"uuid={vm_uuid}", "param-name=memory-static-max"]
            t = _time(argv, env, n)
            ratio = t / base
            m[f"{label} (s)"] = round(t, 4)
            m[f"{label} (×)"] = round(ratio, 2)
            if target is not None:
                res.goals.append(
                    common.Goal(
                        gid,
                        f"{label} ≤ {target:g}× python -c pass",
                        round(ratio, 2),
                        ratio <= target,
                        "timing",
                    )
                )
        vdi_ratio = m["vdi-list --minimal (s)"] / m["vm-list --minimal (s)"]
        res.goals.append(
            common.Goal(
                "S1",
                f"vdi-list --minimal ≤ 2× vm-list --minimal ({vms} each)",
                round(vdi_ratio, 2),
                vdi_ratio <= 2.0,
                "timing",
            )
        )
        batch = os.path.join(tmp, "batch.yaml")
        with open(batch, "w") as f:
            f.writelines(f"- vm-create name-label=b{i:06d} memory=1GiB\n" for i in range(vms))
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "vmctl", "batch", batch], env=env, stdout=subprocess.DEVNULL, check=True
        )
        bt = time.perf_counter() - t0
        m[f"batch of {vms} vm-create (s)"] = round(bt, 2)
        # The target is stated for 15,000 commands; at other scales the figure is informative only.
        res.goals.append(
            common.Goal(
                "F6",
                f"batch of {vms} vm-create ≤ 10 s",
                round(bt, 2),
                bt <= 10.0,
                "timing" if vms == 15000 else "info",
            )
        )
        res.engines["vmctl"] = m
        res.timing = set(m)
        res.notes.append(f"{hosts} hosts, {vms} VMs; medians of {n} runs; interpreter {sys.executable}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res
