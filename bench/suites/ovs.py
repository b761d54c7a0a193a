"""Bridge and port commands (issue: networking speed): median wall time of single `add-br`,
`add-port` and `list-ports` invocations next to the real `ovs-vsctl --no-wait` against a private
ovsdb-server in the same run, and one batch adding 10,000 ports to 100 bridges (≤ 5 s).
Scenarios: ci = 1,000 ports in 10 bridges; S1/S2/C96 = 10,000 ports in 100 bridges."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench import common

SUITE = "ovs"
DEFAULT_SCENARIO = "ci"
SCENARIOS = ("ci", "S1", "S2", "C96")


def _median(fn, n: int) -> float:
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def run(ctx: common.Context) -> common.SuiteResult:
    bridges, per = (10, 100) if ctx.ci else (100, 100)
    res = common.SuiteResult(SUITE, ctx.scenario)
    n = max(5, ctx.repeat)
    tmp = tempfile.mkdtemp(prefix="vmctl-bench-ovs-")
    env = common.process_env(tmp)
    env["VMCTL_DB"] = os.path.join(tmp, "inv.db")
    vm = [sys.executable, "-m", "vmctl"]

    def sh(argv):
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

    try:
        sh([*vm, "host-add", "name-label=h", "address=10.0.0.1", "cpu-count=4", "memory-total=8GiB", "pifs="])
        m: dict = {}
        m["add-br (s)"] = _median(lambda i: sh([*vm, "add-br", f"s{i}"]), n)
        m["add-port (s)"] = _median(lambda i: sh([*vm, "add-port", "s0", f"p{i}"]), n)
        m["list-ports (s)"] = _median(lambda i: sh([*vm, "list-ports", "s0"]), n)
        batch = os.path.join(tmp, "ports.yaml")
        with open(batch, "w") as f:
            for b in range(bridges):
                f.write(f"- add-br b{b}\n")
                f.writelines(f"- add-port b{b} b{b}p{p}\n" for p in range(per))
        t0 = time.perf_counter()
        sh([*vm, "batch", batch])
        bt = time.perf_counter() - t0
        m[f"batch {bridges * per} ports / {bridges} bridges (s)"] = round(bt, 2)
        res.engines["vmctl"] = {k: round(v, 4) for k, v in m.items()}
        limit_ok = bt <= 5.0
        res.goals.append(
            common.Goal(
                "N1",
                f"batch of {bridges * per} ports in {bridges} bridges ≤ 5 s",
                round(bt, 2),
                limit_ok,
                "timing" if not ctx.ci else "info",
            )
        )
        oracle = _oracle()
        if oracle is None:
            res.notes.append(
                "ovs-vsctl not installed: no side-by-side figures (apt-get install openvswitch-switch)"
            )
        else:
            try:
                o = {}
                o["add-br (s)"] = _median(lambda i: oracle.run(["add-br", f"s{i}"]), n)
                o["add-port (s)"] = _median(lambda i: oracle.run(["add-port", "s0", f"p{i}"]), n)
                o["list-ports (s)"] = _median(lambda i: oracle.run(["list-ports", "s0"]), n)
                res.engines["ovs-vsctl --no-wait"] = {k: round(v, 4) for k, v in o.items()}
            finally:
                oracle.close()
        res.timing = {k for e in res.engines.values() for k in e}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def _oracle():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        from tests.ovs.oracle import OvsOracle, missing_tools
    except ImportError:
        return None
    if missing_tools():
        return None
    o = OvsOracle()
    o.start()
    return o
