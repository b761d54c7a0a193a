"""Shared fixtures: a temporary inventory and a runner for the real `vmctl` executable."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_helpers import CLASSES, MANAGERS, VMCTL, Inventory, Result  # noqa: E402,F401

# No test leaves a manager running: vmctl runs in its own process unless a test asks for managers
# (through_managers), and then stops the ones it started.
os.environ["VMCTL_DAEMON"] = "off"


@pytest.fixture
def through_managers():
    """The command line of this test (run_cli, Inventory) runs in the inventories' managers."""
    MANAGERS.on = True
    try:
        yield MANAGERS
        assert MANAGERS.served() > 0, "no command ran in a manager"
    finally:
        MANAGERS.on = False
        MANAGERS.stop_all()


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
