"""The recorded ovs-vsctl results again, this time through vmctl's whole command line
(getopt-style global options, `--` segments, command-option and argument-count checks, the
store, the read-only fast path and the runner), not just the switch session."""

from __future__ import annotations

import pytest

from tests.ovs.oracle import Canon, VmctlState, run_vmctl_cli
from tests.ovs.test_ovs_golden import GOLDEN


@pytest.mark.parametrize("case", GOLDEN, ids=lambda g: " ".join(g["sequence"][0])[:40])
def test_golden_through_the_cli(case, monkeypatch):
    monkeypatch.delenv("VMCTL_HOST", raising=False)
    monkeypatch.delenv("VMCTL_DB", raising=False)
    state = VmctlState()
    canon = Canon()
    for argv, want in zip(case["sequence"], case["results"]):
        have = list(canon(argv, *run_vmctl_cli(argv, state)))
        assert have == want, argv
