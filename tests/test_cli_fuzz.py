"""Every command of the table, fed bad input against a small demo datacenter: never a traceback
or an INTERNAL_ERROR, a failure prints nothing on stdout, and the invariants still hold."""

from __future__ import annotations

import random
import shutil

import pytest
from cli_helpers import cli

from vmctl.commands import load

BAD_VALUES = [
    "",
    "nope",
    "-1",
    "0",
    "1.5",
    "99999999999999999999999999",
    "4GiB",
    "true",
    "☃ü",
    "a,b",
    "@x",
    "00000000-0000-0000-0000-000000000000",
    "x" * 300,
    "NaN",
    "inf",
    "1e400",
    "\\",
    "'",
    "=",
    ":",
]


def _run(db, *words: str) -> tuple[int, str, str]:
    r = cli(db, *words)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "demo.db"
    rc, out, err = _run(path, "demo", "--pools", "2", "--hosts", "4", "--vms", "12", "--seed", "3")
    assert rc == 0, err
    return path


def _refs(db) -> dict[str, list[str]]:
    """A few names (or uuids, for classes without names) of every class, by class."""
    from vmctl.model import CLASSES

    out = {}
    for cls, c in CLASSES.items():
        field = "name-label" if c.named else "uuid"
        rc, text, _ = _run(
            db, f"{cls}-list", f"params={field}", "--minimal", *(["--all"] if cls in ("vm", "vdi") else [])
        )
        vals = [x for x in text.strip().split(",") if x and "\\" not in x]
        rng = random.Random(len(vals))
        out[cls] = rng.sample(vals, min(3, len(vals)))
    out["template"] = out["vm"]
    out["snapshot"] = out["vm"]
    return out


PLAUSIBLE = ["1", "2", "4GiB", "512MiB", "x", "true", "false", "eth1", "10", "br-fuzz", "02:00:00:00:00:01"]


def _value(kind, refs, rng):
    if kind and kind.startswith("enum:"):
        vals = kind[5:].split("|")
        return rng.choice(vals) if rng.random() < 0.7 else rng.choice(BAD_VALUES)
    if kind == "bool":
        return rng.choice(["true", "false", "yes", "maybe"])
    if kind in refs and refs[kind] and rng.random() < 0.75:
        return rng.choice(refs[kind])
    return rng.choice(PLAUSIBLE + BAD_VALUES)


def _argsets(cmd, rng, refs):
    from vmctl.cli.gendocs import _value_kind

    sets = [[]]
    if cmd.style == "ovs":
        for n in range(0, 5):
            sets.append(
                [
                    rng.choice(
                        BAD_VALUES + ["br0", "xenbr0", "eth0", "tag=5", "br0.5", "5", "Bridge", "Port"]
                    )
                    for _ in range(n)
                ]
            )
        return sets
    for _ in range(10):
        words = []
        for a in cmd.args:
            if rng.random() < (0.95 if a.required else 0.4):
                v = _value(_value_kind(cmd, a), refs, rng)
                words.append(f"{a.name}:{v}={v}" if a.type == "map" else f"{a.name}={v}")
        words += [f for f in cmd.flags if rng.random() < 0.3]
        if rng.random() < 0.2:
            words.append("--dry-run")
        sets.append(words)
    sets.append(["bogus-key=1"])
    return sets


@pytest.mark.slow
def test_every_command_survives_bad_input(demo_db, tmp_path):
    rng = random.Random(7)
    cmds = load()
    db = tmp_path / "fuzz.db"
    shutil.copy(demo_db, db)
    refs = _refs(db)
    host = refs["host"][0]
    failures = []
    outcomes: dict[int, int] = {}
    for name in sorted(cmds):
        cmd = cmds[name]
        if cmd.style == "util" and name not in ("help",):
            continue
        for words in _argsets(cmd, rng, refs):
            argv = ["--db", str(db), "--yes", f"--host={host}", name, *words]
            rc, out, err = _run(db, *argv[2:])
            outcomes[rc] = outcomes.get(rc, 0) + 1
            if "Traceback" in err or "INTERNAL_ERROR" in err or rc not in (0, 1, 2):
                failures.append(f"{' '.join(argv[2:])}\n    rc={rc} {err.strip()[:300]}")
            elif rc != 0 and out:
                failures.append(
                    f"{' '.join(argv[2:])}\n    failed (rc={rc}) but printed on stdout: {out[:100]!r}"
                )
    rc, out, err = _run(db, "db-check")
    assert outcomes.get(0, 0) > 200, outcomes  # deep enough to change things, not just refuse
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures[:40])
    assert rc == 0, out + err
