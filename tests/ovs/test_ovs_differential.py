"""Differential tests against the real ovs-vsctl 3.1.0 (network.md §10)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.ovs.oracle import compare

pytestmark = pytest.mark.ovs

CASES = Path(__file__).with_name("cases.txt")


def _sequences() -> list[list[list[str]]]:
    seqs: list[list[list[str]]] = [[]]
    for line in CASES.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line == "%reset":
            seqs.append([])
        else:
            seqs[-1].append(shlex.split(line))
    return [s for s in seqs if s]


@pytest.mark.parametrize("seq", _sequences(), ids=lambda s: " ".join(s[0])[:40])
def test_hand_written(oracle, seq):
    assert compare(oracle, seq) == []
