"""The pieces of `bench/run.py migrate-real` that need no lab: the guest's initramfs writer, its
cache, and the calibration fitted from measurements (the lab tier runs the rest:
tests/lab/test_migration_model.py)."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import linuxguest  # noqa: E402
from bench.suites import migrate_real  # noqa: E402

MiB = 1024**2


def read_newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, content) of a newc cpio archive, read as the kernel reads it."""
    out, i = {}, 0
    while True:
        assert data[i : i + 6] == b"070701", i
        fields = [int(data[i + 6 + 8 * k : i + 14 + 8 * k], 16) for k in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[i + 110 : i + 110 + namesize - 1].decode()
        i += 110 + namesize
        i += -i % 4
        content = data[i : i + size]
        i += size
        i += -i % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, content)


def test_the_initramfs_is_a_newc_archive_the_kernel_can_unpack():
    image = linuxguest.initramfs(
        {"init": (b"#!/bin/sh\n", 0o755), "bin/odd": (b"12345", 0o644)}, dirs=("bin", "usr", "usr/bin")
    )
    entries = read_newc(gzip.decompress(image))
    assert list(entries) == ["bin", "usr", "usr/bin", "init", "bin/odd"]  # parents before children
    assert entries["init"] == (0o100755, b"#!/bin/sh\n")
    assert entries["bin/odd"] == (0o100644, b"12345")
    assert entries["usr/bin"][0] == 0o040755


def test_the_kernel_command_line_carries_the_dirty_rate():
    g = linuxguest.Guest("/k", "/i", "", "")
    assert g.cmdline(32).split()[-1] == "dirty=32"
    assert g.cmdline(8, size_mib=64).split()[-2:] == ["dirty=8", "dirty_size=64"]
    assert "pti=on" in g.cmdline(0).split()


def test_a_cached_guest_is_used_without_asking_apt(tmp_path, monkeypatch):
    for name in ("vmlinuz", "initrd.img"):
        (tmp_path / name).write_bytes(b"x")
    made = {"kernel": "vmlinuz", "initrd": "initrd.img", "kernel-package": "k.deb", "sources": ""}
    (tmp_path / "guest.json").write_text(json.dumps({**made, "sources": linuxguest.sources_digest()}))

    def no_apt(*a, **kw):
        raise AssertionError("apt asked")

    monkeypatch.setattr(linuxguest, "_kernel_package", no_apt)
    monkeypatch.setattr(linuxguest, "_readable", lambda path: None)  # pytest's directory is private
    g = linuxguest.build(tmp_path)
    assert (g.kernel, g.initrd, g.kernel_package) == (
        str(tmp_path / "vmlinuz"),
        str(tmp_path / "initrd.img"),
        "k.deb",
    )
    # a new workload (another digest) builds again
    (tmp_path / "guest.json").write_text(json.dumps(made))
    with pytest.raises(AssertionError, match="apt asked"):
        linuxguest.build(tmp_path)


def synthetic(cal: dict) -> list[migrate_real.Measured]:
    """Measurements as a lab behaving exactly like the calibrated model would give them."""
    from vmctl.engine.migration import limits_for, predict

    limits = limits_for({k: str(v) for k, v in cal.items()}, None, migrate_real.DOWNTIME)
    out = []
    for dirty, bandwidth in migrate_real.CASES:
        p = predict(migrate_real.MEMORY_MIB * MiB, dirty * MiB, bandwidth * MiB, limits)
        m = migrate_real.Measured(
            dirty,
            bandwidth,
            float(dirty),
            p.as_dict(),
            {"total-time": p.total_time, "downtime": p.downtime, "bytes": p.bytes},
        )
        m.uncalibrated = migrate_real.uncalibrated(migrate_real.MEMORY_MIB, dirty, bandwidth)
        out.append(m)
    return out


def test_the_fit_recovers_the_calibration_a_lab_behaves_by():
    cal = {
        "migration-memory-fraction": 0.9,
        "migration-setup-time": 0.3,
        "migration-resume-time": 0.05,
        "migration-max-rate": "200MiB/s",
    }
    results = synthetic(cal)
    got = migrate_real.fit(results)
    assert got["migration-memory-fraction"] == pytest.approx(0.9, abs=0.005)
    assert got["migration-setup-time"] == pytest.approx(0.3, abs=0.01)
    assert got["migration-resume-time"] == pytest.approx(0.05, abs=0.005)
    assert got["migration-max-rate"] == "200MiB/s"
    # the predictions were the measurements: no error; the uncalibrated model's is not zero
    assert migrate_real.median_error(results, "total-time") == 0
    assert migrate_real.median_error(results, "total-time", uncalibrated=True) > 0.05


def test_the_table_has_a_row_per_case_with_both_figures_and_the_error():
    results = synthetic(migrate_real.CALIBRATION)
    results[0].measured["total-time"] *= 2  # predicted half of it: 50% off
    rows = migrate_real.rows(results)
    assert len(rows) == len(migrate_real.CASES)
    first = rows["D 0 MiB/s, R 32 MiB/s"]
    assert first["total err"] == "50.0%"
    assert first["total meas (s)"] == pytest.approx(2 * first["total pred (s)"], rel=1e-3)
