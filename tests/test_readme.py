"""The README's examples run as written: the tour, then the migration example that continues it,
then the Python API example on the same inventory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(section: str, lang: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(rf"```{lang}\n(.*?)```", text[start : end if end > 0 else None], re.S)


@pytest.mark.slow  # some forty invocations of the real executable
def test_tour_and_migration_examples_run_as_written(tmp_path):
    db = tmp_path / "lab.db"
    tour = _blocks("A tour", "sh")[0]
    assert "export VMCTL_DB=/tmp/lab.db" in tour
    script = "\n".join(
        [
            "set -euo pipefail",
            f'vmctl() {{ "{sys.executable}" -m vmctl "$@"; }}',
            tour.replace("/tmp/lab.db", str(db)),
            *_blocks("Migration, evacuation, rebalancing", "sh"),
        ]
    )
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "Traceback" not in p.stderr

    api = _blocks("Python API", "python")[0].replace("/tmp/lab.db", str(db))
    p = subprocess.run([sys.executable, "-c", api], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    check = subprocess.run(
        [sys.executable, "-m", "vmctl", f"--db={db}", "vm-param-get", "uuid=web3", "param-name=other-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.stdout.strip() == "owner: ops"
