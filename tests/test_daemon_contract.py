"""The contract tests of the command line (test_cli_contract.py), run again with every command
going through its inventory's manager (vmctl/daemon): what a command prints, on stdout and
stderr, and its exit status must be what it is in its own process. Every test runs in the slow
tier; the fast tier keeps the one of errors and exit statuses (test_daemon.py compares tables,
formats, chains and standard input both ways)."""

from __future__ import annotations

import functools

import pytest
import test_cli_contract

FAST = {"test_errors_and_exit_codes"}


def _through_managers(test, slow: bool):
    @functools.wraps(test)
    def through(*args, **kwargs):
        return test(*args, **kwargs)

    # marks of its own: the original test keeps its own tier
    marks = list(getattr(test, "pytestmark", [])) + [pytest.mark.usefixtures("through_managers")]
    through.pytestmark = marks + ([pytest.mark.slow] if slow else [])
    return through


for _name in dir(test_cli_contract):
    if _name.startswith("test_"):
        globals()[_name] = _through_managers(getattr(test_cli_contract, _name), _name not in FAST)
