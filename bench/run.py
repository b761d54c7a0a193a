#!/usr/bin/env python3
"""vmctl benchmark suite (engine.md §8).

    bench/run.py [SUITE …] [--scenario ci|S1|S2|C96] [--seed N] [--repeat K] [--engines LIST]
                 [--trace DIR] [--out DIR] [--db URL] [--reference] [--no-check]

Suites are discovered from bench/suites/*.py: each module exposes ``SUITE`` (its name),
``DEFAULT_SCENARIO``, ``SCENARIOS`` and ``run(ctx) -> SuiteResult``. Exit status 0 when every
checked goal passes, else 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402

ORDER = ("place", "pack", "replay", "ha", "evacuate", "rebalance", "migrate")


def discover() -> dict[str, object]:
    import bench.suites as pkg

    found: dict[str, object] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"bench.suites.{info.name}")
        name = getattr(mod, "SUITE", None)
        if name and callable(getattr(mod, "run", None)):
            found[name] = mod
    return dict(sorted(found.items(), key=lambda kv: (ORDER.index(kv[0]) if kv[0] in ORDER else 99, kv[0])))


def main(argv: list[str] | None = None) -> int:
    suites = discover()
    ap = argparse.ArgumentParser(prog="bench/run.py", description="vmctl benchmark suite (engine.md §8)")
    ap.add_argument("suites", nargs="*", metavar="SUITE", help=f"{', '.join(suites)} or all [all]")
    ap.add_argument("--scenario", choices=("ci", "S1", "S2", "C96"), help="default: each suite's own")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, help="[5; 1 for ci]")
    ap.add_argument("--engines", help="comma-separated engine names (default: the suite's list)")
    ap.add_argument(
        "--trace",
        type=Path,
        default=None,
        help="trace directory [$VMCTL_TRACE_DIR, else bench/data/azure-v1]",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--db", default=None, help="database URL for P3 (suites that use one)")
    ap.add_argument("--reference", action="store_true", help="also check the absolute reference figures")
    ap.add_argument("--no-check", action="store_true", help="report goals without gating the exit status")
    args = ap.parse_args(argv)
    names = args.suites or ["all"]
    if "all" in names:
        names = list(suites)
    unknown = [n for n in names if n not in suites]
    if unknown:
        ap.error(f"unknown suite(s): {', '.join(unknown)}; known: {', '.join(suites)}")
    trace_dir = args.trace or (
        Path(os.environ["VMCTL_TRACE_DIR"])
        if os.environ.get("VMCTL_TRACE_DIR")
        else ROOT / "bench" / "data" / "azure-v1"
    )
    ok = True
    for name in names:
        mod = suites[name]
        scenario = args.scenario or mod.DEFAULT_SCENARIO
        if scenario not in mod.SCENARIOS:
            print(f"<!-- suite {name}: scenario {scenario} not supported ({', '.join(mod.SCENARIOS)}) -->\n")
            continue
        repeat = args.repeat or (1 if scenario == "ci" else 5)
        ctx = common.Context(
            scenario=scenario,
            seed=args.seed,
            repeat=repeat,
            engines=args.engines.split(",") if args.engines else None,
            trace_dir=trace_dir,
            out=args.out,
            reference=args.reference,
            check=not args.no_check,
        )
        ctx.db = args.db  # type: ignore[attr-defined]
        res = mod.run(ctx)
        print(common.write(res, ctx))
        sys.stdout.flush()
        ok &= res.ok(ctx)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
