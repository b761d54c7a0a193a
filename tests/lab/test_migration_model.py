"""The engine's pre-copy model (engine.md §4.2) against real migrations (drivers.md §6 tier 3): a
small Linux guest (bench/linuxguest: a Debian kernel and a busybox initramfs, software emulation)
dirties its memory at a set rate and moves between the lab's hosts with vm-migrate at set
bandwidths; the prediction and libvirt's measurement that vm-migrate records side by side are
compared. A quality goal of the model, not a timing of vmctl: the median relative error of the
total time over the cases is at most 15% with the lab's calibration (bench/suites/migrate_real.py,
whose full set of cases `bench/run.py migrate-real` runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.suites import migrate_real  # noqa: E402

pytestmark = pytest.mark.lab

MiB = 1024**2


def test_the_pre_copy_model_predicts_a_linux_guests_real_migrations(lab):
    results = migrate_real.measure(lab.inv.ok, migrate_real.LAB_CASES)
    table = json.dumps(migrate_real.rows(results), indent=1)
    assert [(r.dirty, r.bandwidth) for r in results] == list(migrate_real.LAB_CASES)
    for r in results:
        # the guest dirtied what it was told to (its own count over the second before), and the
        # prediction is the calibrated model's for exactly these inputs
        assert r.guest_dirty == pytest.approx(r.dirty, abs=1), table
        assert r.predicted["rate"] == r.bandwidth * MiB, table
        assert r.predicted["stop-reason"] == "converged", table
        assert r.measured["bytes"] > 0 and r.measured["total-time"] > 0, table
    # a guest that dirties memory makes the migration send more than one that does not
    by = {(r.dirty, r.bandwidth): r for r in results}
    assert by[(32, 64)].measured["bytes"] > 1.5 * by[(0, 64)].measured["bytes"], table
    error = migrate_real.median_error(results, "total-time")
    assert error is not None and error <= migrate_real.TARGET, table
    # the calibration was the run's only: the lab's pool is as it was
    pool = json.loads(lab.inv.ok("-f", "json", "pool-list", "params=other-config"))[0]
    assert not set(pool["other-config"]) & set(migrate_real.CALIBRATION), pool
