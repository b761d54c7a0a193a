"""Differential tests against the real ovs-vsctl 3.1.0 (network.md §10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ovs.oracle import compare, read_cases

pytestmark = pytest.mark.ovs

CASES = Path(__file__).with_name("cases.txt")


@pytest.mark.parametrize("seq", read_cases(str(CASES)), ids=lambda s: " ".join(s[0])[:40])
def test_hand_written(oracle, seq):
    assert compare(oracle, seq) == []
