"""Differential-testing harness: the real ovs-vsctl against a private, throw-away ovsdb-server
(network.md §10), and the vmctl side driven the same way.

The server runs in a temporary directory as our own child process (no ovs-vswitchd, no kernel
module, nothing outside the directory); `OvsOracle.stop()` ends it and removes the directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid as uuidlib
from dataclasses import dataclass, field

SCHEMA = os.environ.get("OVS_SCHEMA", "/usr/share/openvswitch/vswitch.ovsschema")
TOOLS = ("ovsdb-server", "ovsdb-tool", "ovs-vsctl")


def missing_tools() -> str | None:
    """Why the oracle cannot run here, or None."""
    for t in TOOLS:
        if shutil.which(t) is None:
            return f"{t} not installed (apt-get install openvswitch-switch)"
    if not os.path.exists(SCHEMA):
        return f"no OVS schema at {SCHEMA}"
    return None


class OvsOracle:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="vmctl-ovs-oracle.")
        self.sock = os.path.join(self.dir, "db.sock")
        self.proc: subprocess.Popen | None = None

    def _sh(self, *cmd: str) -> None:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"{cmd[0]} failed: {r.stderr.strip()}")

    def start(self) -> None:
        db = os.path.join(self.dir, "conf.db")
        for f in (db, os.path.join(self.dir, ".conf.db.~lock~"), self.sock):
            if os.path.exists(f):
                os.unlink(f)
        self._sh("ovsdb-tool", "create", db, SCHEMA)
        # an empty root row, as the reference database of network.md has
        self._sh(
            "ovsdb-tool", "transact", db, '["Open_vSwitch",{"op":"insert","table":"Open_vSwitch","row":{}}]'
        )
        self.proc = subprocess.Popen(
            [
                "ovsdb-server",
                "-vconsole:off",
                "-vsyslog:off",
                db,
                "--remote=punix:" + self.sock,
                "--unixctl=" + os.path.join(self.dir, "ovsdb-server.ctl"),
                "--log-file=" + os.path.join(self.dir, "ovsdb-server.log"),
                "--no-chdir",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(1000):
            if self.proc.poll() is not None:
                break
            if os.path.exists(self.sock):
                with socket.socket(socket.AF_UNIX) as c:
                    try:
                        c.connect(self.sock)
                        return
                    except OSError:
                        pass
            time.sleep(0.005)
        raise RuntimeError("ovsdb-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def reset(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        cmd = [
            "ovs-vsctl",
            "--db=unix:" + self.sock,
            "--no-wait",
            "--timeout=10",
            "-vreconnect:emer",
            "-vsyslog:off",
            "-vPATTERN:console:%c|%p|%m",
            *argv,
        ]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
        rc = r.returncode if r.returncode >= 0 else 128 - r.returncode
        return rc, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


# ------------------------------------------------------------------ the vmctl side

GLOBAL_FLAGS = ("--oneline", "--dry-run", "--bare", "--no-headings")


@dataclass
class VmctlState:
    """What persists between invocations: the host's rows (in-process mode), or the inventory
    file and the host (CLI mode)."""

    host_uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))
    records: dict = field(default_factory=dict)
    db: str | None = None


# VMCTL_OVS_HARNESS=cli runs the real command line (`python -m vmctl`) on a fresh inventory holding
# one host without PIFs (network.md: the reference state); the default drives vmctl.ovs directly.
CLI_MODE = os.environ.get("VMCTL_OVS_HARNESS") == "cli"


def _cli(state: VmctlState, argv: list[str]) -> tuple[int, str, str]:
    import atexit
    import sys

    if state.db is None:
        d = tempfile.mkdtemp(prefix="vmctl-ovs-cli.")
        atexit.register(shutil.rmtree, d, True)
        state.db = os.path.join(d, "inventory.db")
        rc, out, err = _cli(
            state,
            ["host-add", "name-label=h1", "address=10.0.0.1", "cpu-count=4", "memory-total=8GiB", "pifs="],
        )
        if rc:
            raise RuntimeError("host-add failed: " + err)
        state.host_uuid = out.strip()
    env = dict(os.environ, VMCTL_DB=state.db)
    env.pop("VMCTL_HOST", None)
    r = subprocess.run(
        [sys.executable, "-m", "vmctl", "--db=" + state.db, *argv],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def _parse(argv: list[str]):
    """A minimal stand-in for the CLI grammar of network.md §2.1-2.2 (owned elsewhere)."""
    from vmctl.errors import OvsError
    from vmctl.ovs import COMMANDS

    i = 0
    glob: set[str] = set()
    first: dict[str, str | None] = {}
    while i < len(argv) and argv[i].startswith("-"):
        w = argv[i]
        i += 1
        if w == "--":
            break
        key, eq, val = w.partition("=")
        if key in GLOBAL_FLAGS:
            glob.add(key)
        elif key in ("--format", "-f"):  # the output format: "--format=FMT" in the global set
            if not eq and i < len(argv):
                val = argv[i]
                i += 1
            glob.add("--format=" + val)
        else:
            first[key] = val if eq else None
    segs: list[list[str]] = [[]]
    for w in argv[i:]:
        if w == "--":
            segs.append([])
        else:
            segs[-1].append(w)
    cmds = []
    for n, seg in enumerate(segs):
        opts = dict(first) if n == 0 else {}
        if not seg and not (n == 0 and first):
            continue
        j = 0
        while j < len(seg) and seg[j].startswith("-"):
            key, eq, val = seg[j].partition("=")
            if key in opts:
                raise OvsError(f"'{seg[j]}' option specified multiple times")
            opts[key] = val if eq else None
            j += 1
        if j >= len(seg):
            raise OvsError("missing command name (use --help for help)")
        name, args = seg[j], seg[j + 1 :]
        spec = COMMANDS.get(name)
        if spec is None:
            raise OvsError(f"unknown command '{name}'; use --help for help")
        for key, val in opts.items():
            s = spec.options
            k = s.find(key)
            while k >= 0 and not (k + len(key) == len(s) or s[k + len(key)] in "=,"):
                k = s.find(key, k + 1)
            if k < 0:
                raise OvsError(f"'{name}' command has no '{key}' option")
            needs = k + len(key) < len(s) and s[k + len(key)] == "="
            if needs and val is None:
                raise OvsError(f"missing argument to '{key}' option on '{name}' command")
            if not needs and val is not None:
                raise OvsError(f"'{key}' option on '{name}' does not accept an argument")
        if len(args) < spec.min_args:
            raise OvsError(f"'{name}' command requires at least {spec.min_args} arguments")
        if spec.max_args is not None and len(args) > spec.max_args:
            note = ""
            if any(a.startswith("-") for a in args):
                note = ' (note that options must precede command names and follow a "--" argument)'
            raise OvsError(f"'{name}' command takes at most {spec.max_args} arguments{note}")
        cmds.append((name, opts, args))
    if not cmds:
        raise OvsError("missing command name (use --help for help)")
    return glob, cmds


def run_vmctl_cli(argv: list[str], state: VmctlState) -> tuple[int, str, str]:
    """The whole command line in-process (vmctl.__main__.main: global-option parsing, segments,
    the store, fast paths and the runner) on a fresh inventory holding one host without PIFs:
    the real path minus process start-up."""
    import contextlib
    import io

    from vmctl.__main__ import main

    def call(words):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["--db=" + state.db, *words])
        return rc, out.getvalue(), err.getvalue()

    if state.db is None:
        import atexit

        d = tempfile.mkdtemp(prefix="vmctl-ovs-inproc.")
        atexit.register(shutil.rmtree, d, True)
        state.db = os.path.join(d, "inventory.db")
        rc, out, err = call(
            ["host-add", "name-label=h1", "address=10.0.0.1", "cpu-count=4", "memory-total=8GiB", "pifs="]
        )
        if rc:
            raise RuntimeError("host-add failed: " + err)
        state.host_uuid = out.strip()
    return call(argv)


def run_vmctl(argv: list[str], state: VmctlState) -> tuple[int, str, str]:
    """Run one vmctl invocation of ovs-style commands; return (rc, stdout, stderr).

    With VMCTL_OVS_HARNESS=cli it runs ``python -m vmctl --db=PATH ARGS`` instead (`_cli`).
    """
    if CLI_MODE:
        return _cli(state, argv)
    from vmctl.errors import OvsError
    from vmctl.ovs import Session, check

    err: list[str] = []
    try:
        glob, cmds = _parse(argv)
        for name, opts, args in cmds:
            check(name, opts, args)
        s = Session(
            state.host_uuid,
            state.records,
            lambda: str(uuidlib.uuid4()),
            lambda line: err.append(line + "\n"),
            bare="--bare" in glob,
            no_headings="--no-headings" in glob,
        )
        fmt = next((g.partition("=")[2] for g in glob if g.startswith("--format=")), None)
        outs = [s.run(name, opts, args, oneline="--oneline" in glob, fmt=fmt) for name, opts, args in cmds]
        if "--dry-run" not in glob:
            s.commit_check()
            if s.changed:
                state.records = s.records()
    except OvsError as e:
        if e.message is not None:
            err.append(f"vmctl: {e.message}\n")
        return e.exit_code, "", "".join(err)
    return 0, "".join(outs), "".join(err)


# ------------------------------------------------------------------ canonical forms

_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_U = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# a set of several uuids is printed in uuid order, which differs between the sides
_UUID_SET = re.compile(rf"\[{_U}(?:, {_U})+\]")
_JSON_UUID_SET = re.compile(rf'\["set",\[\["uuid","{_U}"\](?:,\["uuid","{_U}"\])+\]\]')
_TXN_DETAIL = re.compile(r'\.  First row, with UUID [^"]*?(?=","error")')


class Canon:
    """Renames uuids <0>, <1>, ... in order of first appearance (one instance per side)."""

    def __init__(self) -> None:
        self.map: dict[str, str] = {}

    def __call__(self, argv: list[str], rc: int, out: str, err: str) -> tuple[int, str, str]:
        words = [a for a in argv if not a.startswith("-")]
        if words == ["show"]:
            out = sort_tree(out)
        elif out.startswith('{"data":'):
            out = sort_json_tables(out)
        elif len(words) == 2 and words[0] == "list" and "--" not in argv and rc == 0:
            out = sort_list(argv, out)
        err = "".join(line + "\n" for line in err.splitlines() if not line.startswith("ovsdb_idl|WARN|"))
        err = _TXN_DETAIL.sub(".", err).replace("ovs-vsctl: ", "vmctl: ")
        out = _UUID_SET.sub(lambda m: "[" + ", ".join(["<u>"] * (m.group(0).count(",") + 1)) + "]", out)
        out = _JSON_UUID_SET.sub(
            lambda m: '["set",[' + ",".join(["<u>"] * m.group(0).count('"uuid"')) + "]]", out
        )
        out = _UUID.sub(lambda m: self.map.setdefault(m.group(0), f"<{len(self.map)}>"), out)
        err = _UUID.sub(lambda m: self.map.setdefault(m.group(0), f"<{len(self.map)}>"), err)
        return rc, out, err


def sort_list(argv: list[str], out: str) -> str:
    """The records of a single `list` table, sorted (ovs-vsctl lists rows in uuid order)."""
    from vmctl.ovs.generic import resolve_table, split_columns
    from vmctl.ovs.schema import COLUMNS

    cols = [a.partition("=")[2] for a in argv if a.startswith("--columns=")]
    words = [a for a in argv if not a.startswith("-")]
    k = len(split_columns(cols[0])) if cols else len(COLUMNS[resolve_table(words[1])]) + 1
    lines = out.split("\n")[:-1]
    recs, i = [], 0
    while i < len(lines):
        if lines[i] == "" and recs:
            i += 1
        recs.append("\n".join(lines[i : i + k]))
        i += k
    recs.sort(key=lambda r: _UUID.sub("", r))
    return "".join(r + "\n\n" for r in recs)


def sort_json_tables(out: str) -> str:
    """`list --format=json` lines, their rows sorted (ovs-vsctl lists rows in uuid order). A line
    is re-encoded only when that gives back exactly its bytes, so the canonical form hides no
    difference of encoding."""
    lines = []
    for line in out.split("\n"):
        if line.startswith('{"data":'):
            doc = json.loads(line)
            if json.dumps(doc, separators=(",", ":"), ensure_ascii=False) == line:
                doc["data"].sort(key=lambda r: _UUID.sub("", json.dumps(r, ensure_ascii=False)))
                line = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        lines.append(line)
    return "\n".join(lines)


def sort_tree(text: str) -> str:
    lines = text.splitlines()

    def tree(i: int, depth: int):
        kids = []
        while i < len(lines):
            ind = (len(lines[i]) - len(lines[i].lstrip(" "))) // 4
            if ind < depth:
                break
            node = lines[i]
            i += 1
            sub, i = tree(i, depth + 1)
            kids.append([node, *sub])
        kids.sort(key=lambda k: "\n".join(k))
        return [x for k in kids for x in k], i

    return "".join(x + "\n" for x in tree(0, 0)[0])


def compare(oracle: OvsOracle, sequence: list[list[str]]) -> list[str]:
    """Run a sequence of invocations on both sides from fresh state; return the differences."""
    oracle.reset()
    state = VmctlState()
    ca, cb = Canon(), Canon()
    diffs = []
    for argv in sequence:
        a = ca(argv, *oracle.run(argv))
        b = cb(argv, *run_vmctl(argv, state))
        if a != b:
            diffs.append(json.dumps({"argv": argv, "ovs": a, "vmctl": b}, ensure_ascii=False))
    return diffs


def read_cases(path: str) -> list[list[list[str]]]:
    """Sequences of invocations from a cases file (shell quoting, `#` comments, `%reset`)."""
    import shlex

    seqs: list[list[list[str]]] = [[]]
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line == "%reset":
                seqs.append([])
            else:
                seqs[-1].append(shlex.split(line))
    return [s for s in seqs if s]


def record_golden(cases: str, golden: str) -> None:
    """Record the real ovs-vsctl's canonical results for a cases file, so that the unit tests can
    check vmctl against them on machines without Open vSwitch."""
    o = OvsOracle()
    try:
        o.start()
        with open(golden, "w", encoding="utf-8") as f:
            for seq in read_cases(cases):
                o.reset()
                canon = Canon()
                results = [list(canon(argv, *o.run(argv))) for argv in seq]
                f.write(json.dumps({"sequence": seq, "results": results}, ensure_ascii=False) + "\n")
    finally:
        o.close()


if __name__ == "__main__":  # python tests/ovs/oracle.py  (re-records golden.jsonl)
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here.parents[1]))
    record_golden(str(here / "cases.txt"), str(here / "golden.jsonl"))
