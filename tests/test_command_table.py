"""Starting one command imports only the module of vmctl.commands that declares it (the generated
index, commands/_index.py); the whole table, loaded afterwards, is the same as loaded at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TABLE = """
import json, sys
from vmctl.commands import find, load
for name in sys.argv[1:]:
    assert find(name) is not None, name
families = sorted(m for m in sys.modules if m.startswith("vmctl.commands."))
table = [(c.name, c.module, c.help) for c in load().values()]
print(json.dumps({"families": families, "table": table}))
"""


def _run(*names: str) -> dict:
    p = subprocess.run(
        [sys.executable, "-c", TABLE, *names], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(p.stdout)


def test_one_command_imports_its_module_only():
    code = (
        "import sys; from vmctl.commands import find; find(sys.argv[1]); "
        "print(sorted(m for m in sys.modules if m.startswith('vmctl.commands.')))"
    )
    for name, module in (("vm-start", "vmpower"), ("vdi-create", "vdi"), ("add-br", "bridge")):
        p = subprocess.run(
            [sys.executable, "-c", code, name], cwd=ROOT, capture_output=True, text=True, check=True
        )
        expected = {"vmctl.commands._index", f"vmctl.commands.{module}", "vmctl.commands.table"}
        assert eval(p.stdout) == sorted(expected)


def test_the_whole_table_does_not_depend_on_what_was_imported_first():
    from vmctl.commands._index import MODULES

    whole = _run()
    assert [name for name, _, _ in whole["table"]] == list(MODULES)
    assert {name: module for name, module, _ in whole["table"]} == MODULES
    # a family module alone first (its param setters extend vdi-param-set's help), then all
    assert _run("vdi-create", "vm-start")["table"] == whole["table"]
    # a generic command needs every family's param hooks: it loads the whole table
    assert len(_run("vm-param-set")["families"]) > 10


def test_one_transaction_runs_without_the_cycle_collector_and_a_utility_with_it(tmp_path, monkeypatch):
    """vmctl/__main__.py turns the cyclic garbage collector off for a command chain (one short
    transaction) and run_utility turns it back on for batch, demo and the other utilities."""
    import gc

    from vmctl.__main__ import main

    monkeypatch.setenv("VMCTL_DB", str(tmp_path / "gc.db"))
    seen = []
    try:
        assert main(["pool-create", "name-label=p", "--", "pool-list", "--minimal"]) == 0
        seen.append(gc.isenabled())
        assert main(["help", "vm-start"]) == 0
        seen.append(gc.isenabled())
    finally:
        gc.enable()
    assert seen == [False, True]
