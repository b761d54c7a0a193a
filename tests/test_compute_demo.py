"""`vmctl demo` starts its VMs through the engine (batch placement), deterministically for a seed."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import run_cli


def test_demo_places_every_vm_deterministically(tmp_path: Path) -> None:
    outs = []
    for name in ("a.db", "b.db"):
        db = tmp_path / name
        r = run_cli(db, "demo", "--pools", "2", "--hosts", "6", "--vms", "40", "--seed", "5")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("demo (seed 5): 2 pools, 6 hosts, 40 VMs (40 running)")
        vms = json.loads(
            run_cli(
                db,
                "-f",
                "json",
                "vm-list",
                "params=uuid,name-label,resident-on,domid,last-boot-cpu-flags,power-state",
            ).stdout
        )
        assert len(vms) == 40 and all(v["power-state"] == "running" and v["resident-on"] for v in vms)
        assert run_cli(db, "db-check").returncode == 0
        outs.append((r.stdout, vms))
    assert outs[0] == outs[1]
