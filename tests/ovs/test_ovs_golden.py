"""vmctl against results recorded from the real ovs-vsctl 3.1.0 (golden.jsonl, made from cases.txt
by `python tests/ovs/oracle.py`): runs everywhere, no Open vSwitch needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ovs.oracle import Canon, VmctlState, read_cases, run_vmctl

HERE = Path(__file__).resolve().parent
GOLDEN = [json.loads(line) for line in (HERE / "golden.jsonl").read_text(encoding="utf-8").splitlines()]


def test_golden_is_current():
    assert [g["sequence"] for g in GOLDEN] == read_cases(str(HERE / "cases.txt")), (
        "cases.txt changed: re-record with `python tests/ovs/oracle.py`"
    )


@pytest.mark.parametrize("case", GOLDEN, ids=lambda g: " ".join(g["sequence"][0])[:40])
def test_golden(case):
    state = VmctlState()
    canon = Canon()
    got = [list(canon(argv, *run_vmctl(argv, state))) for argv in case["sequence"]]
    for argv, want, have in zip(case["sequence"], case["results"], got):
        assert have == want, argv
