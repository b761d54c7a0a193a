"""How commands select objects: list filters on reference and enum fields, the selector keys of
single-object commands (the class key and uuid=), and --explain, which only explains."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import Inventory

SETUP = [
    "pool-create name-label=p1",
    "host-add name-label=h1 address=10.0.0.1 cpu-count=8 memory-total=64GiB pool=p1",
    "host-add name-label=h2 address=10.0.0.2 cpu-count=16 memory-total=128GiB pool=p1",
    "sr-create name-label=lvm2 type=lvm physical-size=100GiB host=h1",
    "sr-create name-label=nfs type=nfs physical-size=100GiB",
    "pool-param-set uuid=p1 default-sr=nfs",
    "vdi-create sr-uuid=nfs name-label=d1 virtual-size=1GiB",
    "vdi-create sr-uuid=lvm2 name-label=d2 virtual-size=1GiB",
    "vm-create name-label=web1 memory=2GiB vcpus=2",
    "vm-create name-label=db1 memory=4GiB vcpus=2",
    "vm-create name-label=sus memory=1GiB",
    "vm-start vm=db1 on=h1",
    "vm-start vm=sus on=h2",
    "vm-suspend vm=sus",
]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    inv = Inventory(tmp_path_factory.mktemp("selection") / "inv.db")
    words: list[str] = []
    for line in SETUP:
        words += [*line.split(), "--"]
    inv.ok(*words[:-1])
    return inv.db


@pytest.fixture
def lab(template, tmp_path) -> Inventory:
    inv = Inventory(tmp_path / "inv.db")
    shutil.copy(template, inv.db)
    return inv


# --- --explain only explains -----------------------------------------------------------------------
EXPLAINED = [
    "vm-start vm=web1",
    "vm-resume vm=sus",
    "vm-migrate vm=db1 host=h2",
    "vm-clone vm=web1 new-name-label=c",
    "vm-copy vm=web1 new-name-label=c sr-uuid=nfs",
    "vdi-copy uuid=d1 sr-uuid=lvm2",
    "host-evacuate host=h1",
    "pool-rebalance",
    "host-fail host=h1",
    "host-declare-dead uuid=h1",
    "vm-place vm=web1",
]


@pytest.mark.parametrize("line", EXPLAINED, ids=[x.split()[0] for x in EXPLAINED])
def test_explain_changes_nothing(lab: Inventory, line: str) -> None:
    before = lab.snapshot()
    out = lab.ok(*line.split(), "--explain")
    assert out.strip(), "--explain printed no explanation"
    assert lab.snapshot() == before


def test_explain_as_a_global_option_changes_nothing(lab: Inventory) -> None:
    before = lab.snapshot()
    assert lab.ok("--explain", "vm-start", "vm=web1").strip()
    assert lab.snapshot() == before


def test_explain_in_a_chain_rolls_back_the_chain(lab: Inventory) -> None:
    before = lab.snapshot()
    lab.ok("vm-param-set", "uuid=web1", "vcpus=1", "--", "vm-start", "vm=web1", "--explain")
    assert lab.snapshot() == before
