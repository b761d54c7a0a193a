"""Shared fixtures: a temporary inventory and a runner for the real `vmctl` executable."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_helpers import CLASSES, VMCTL, Inventory, Result  # noqa: E402,F401


@pytest.fixture
def inv(tmp_path) -> Inventory:
    return Inventory(tmp_path / "inv.db")


@pytest.fixture
def small(inv, small_template) -> Inventory:
    """A pool with two hosts and two VMs (a copy of one built once per session)."""
    shutil.copy(small_template, inv.db)
    return inv


@pytest.fixture(scope="session")
def small_template(tmp_path_factory) -> Path:
    inv = Inventory(tmp_path_factory.mktemp("small") / "inv.db")
    inv.ok(
        "pool-create",
        "name-label=p1",
        "--",
        "host-add",
        "name-label=h1",
        "address=10.0.0.1",
        "cpu-count=8",
        "memory-total=64GiB",
        "pool=p1",
        "--",
        "host-add",
        "name-label=h2",
        "address=10.0.0.2",
        "cpu-count=16",
        "memory-total=128GiB",
        "pool=p1",
        "--",
        "vm-create",
        "name-label=web1",
        "memory=2GiB",
        "vcpus=2",
        "--",
        "vm-create",
        "name-label=db1",
        "memory=8GiB",
        "vcpus=4",
    )
    return inv.db
