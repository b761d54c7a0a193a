"""`vmctl lab` without a lab: its command line, its refusals (one line, nothing started), status
read from a state file, and the pieces of up/down that can be checked on their own. The real lab
is the `lab` tier (tests/lab/)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from cli_helpers import VMCTL, cli, cli_env

from vmctl.lab import net, prereq, registry
from vmctl.lab.state import HostRecord, LabState, Proc, load, read_stat
from vmctl.runner import Options

ROOT = os.geteuid() == 0


def lab_cli(inv, *args):
    """vmctl in-process (fast): these runs start nothing."""
    r = cli(inv.db, *args)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def _host(i: int, pid: int) -> HostRecord:
    a = f"10.201.0.{10 + i}"
    return HostRecord(
        f"lab{i}", a, f"uuid-{i}", f"qemu+tcp://{a}/system", f"tcp:{a}:6640", f"vmctl-lab{i}", pid
    )


# --- the command line ------------------------------------------------------------------------------------
def test_lab_takes_one_action_and_its_own_options(inv):
    def fails(*args):
        r = lab_cli(inv, *args)
        assert r.returncode == 1 and r.stdout == ""
        return r.stderr

    assert fails("lab").startswith("vmctl: USAGE: The following arguments are required: action")
    assert fails("lab", "sideways").startswith("vmctl: INVALID_VALUE: Name one action: up, status or down")
    assert "--hosts is an option of lab up" in fails("lab", "status", "--hosts", "3")
    assert "--format is an option of lab status" in fails("lab", "down", "-f", "json")
    assert "between 1 and 32" in fails("lab", "up", "--hosts", "0")
    assert "cannot be part of a chain" in fails("pool-list", "--", "lab", "status")
    assert lab_cli(inv, "lab", "--help").stdout.startswith("usage: vmctl lab up [--hosts N] [--dir DIR]")


def test_a_lab_directory_path_is_one_plain_word(inv, tmp_path):
    r = lab_cli(inv, "lab", "up", "--dir", str(tmp_path / "a b"))
    assert r.returncode == 1 and r.stderr.startswith("vmctl: INVALID_VALUE: ") and "--dir" in r.stderr
    assert not (tmp_path / "a b").exists()


def test_status_and_down_without_a_lab(inv, tmp_path):
    where = tmp_path / "nothing"
    r = lab_cli(inv, "lab", "status", "--dir", str(where))
    assert r.returncode == 1 and r.stderr.startswith("vmctl: LAB_NOT_UP: ") and str(where) in r.stderr
    # down is idempotent: no lab, nothing to do, success
    r = lab_cli(inv, "lab", "down", "--dir", str(where))
    assert (r.returncode, r.stdout) == (0, f"lab: no lab is up (nothing in {where})\n")
    assert not where.exists()


def test_status_prints_one_row_per_host_from_the_state(inv, tmp_path):
    me = read_stat(os.getpid())
    assert me is not None
    lab = LabState(dir=str(tmp_path), ready=True)
    lab.hosts = [_host(1, os.getpid()), _host(2, 999999999)]
    lab.procs = [Proc(os.getpid(), me[1], "lab1: init (tini)")]
    lab.save()
    d = str(tmp_path)

    def ok(*args):
        r = lab_cli(inv, *args)
        assert r.returncode == 0, r.stderr
        return r

    rows = json.loads(ok("lab", "status", "--dir", d, "-f", "json").stdout)
    assert rows == [h.row() for h in lab.hosts]
    assert rows[0] == {
        "name": "lab1",
        "address": "10.201.0.11",
        "driver-uri": "qemu+tcp://10.201.0.11/system",
        "ovsdb": "tcp:10.201.0.11:6640",
        "pid": os.getpid(),
    }
    assert json.loads(ok("lab", "status", "--dir", d, "-fjson").stdout) == rows
    assert json.loads(ok("-f", "json", "lab", "status", "--dir", d).stdout) == rows
    table = ok("lab", "status", "--dir", d)
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["name", "address", "driver-uri", "ovsdb", "pid"]
    assert lines[1].split() == [
        "lab1",
        "10.201.0.11",
        "qemu+tcp://10.201.0.11/system",
        "tcp:10.201.0.11:6640",
        str(os.getpid()),
    ]
    # lab2's init is not running: said on stderr, the rows stay what the lab is
    assert table.stderr == "vmctl: warning: lab hosts not running: lab2\n"
    assert (
        ok("lab", "status", "--dir", d, "--format=csv").stdout.splitlines()[2].startswith("lab2,10.201.0.12,")
    )
    assert ok("--minimal", "lab", "status", "--dir", d).stdout == "lab1,lab2\n"


# --- refusals before anything starts ------------------------------------------------------------------
def _programs_or_skip() -> dict[str, str]:
    found = {p: prereq.find(p) for p in prereq.PROGRAMS}
    missing = [p for p, w in found.items() if w is None]
    if missing or not prereq.has_libvirt_python():
        pytest.skip(f"the lab's packages are not all installed (missing: {missing or 'libvirt-python'})")
    return {p: str(w) for p, w in found.items()}


def test_missing_packages_one_line_naming_them_and_the_apt_line(inv, tmp_path):
    programs = _programs_or_skip()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, where in programs.items():
        if name not in ("tini", "bindfs"):
            os.symlink(where, bin_dir / name)
    lab_dir = tmp_path / "lab"
    r = inv.run("lab", "up", "--dir", str(lab_dir), env={"PATH": str(bin_dir)})
    assert r.rc == 1 and r.out == ""
    suffix = "" if ROOT else " (as root)"
    assert r.err == (
        f"vmctl: LAB_PACKAGES_MISSING: vmctl lab needs tini, bindfs: apt-get install -y tini bindfs{suffix}\n"
    )
    assert not lab_dir.exists() and not inv.db.exists()


@pytest.mark.skipif(not ROOT or shutil.which("setpriv") is None, reason="needs root and setpriv to drop it")
def test_not_root_one_line_and_nothing_started(tmp_path):
    _programs_or_skip()
    lab_dir = tmp_path / "lab"
    # uid nobody, keeping only the right to read files (this Python may live under /root)
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    drop += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    env = cli_env(tmp_path / "inv.db")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    p = subprocess.run(
        [*drop, *VMCTL, "lab", "up", "--dir", str(lab_dir)], capture_output=True, text=True, env=env, cwd="/"
    )
    assert p.returncode == 1 and p.stdout == "", p.stderr
    assert p.stderr.startswith("vmctl: LAB_NEEDS_ROOT: ") and p.stderr.count("\n") == 1, p.stderr
    assert not lab_dir.exists() and not (tmp_path / "inv.db").exists()


def test_down_needs_root_when_there_is_a_lab(inv, tmp_path, monkeypatch):
    LabState(dir=str(tmp_path)).save()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    r = lab_cli(inv, "lab", "down", "--dir", str(tmp_path))
    assert r.returncode == 1 and r.stderr.startswith("vmctl: LAB_NEEDS_ROOT: ") and r.stderr.count("\n") == 1
    assert load(str(tmp_path)) is not None  # nothing touched


@pytest.fixture
def open_dir():
    """A directory other users may pass through (pytest's own is private to its user)."""
    d = Path(tempfile.mkdtemp(prefix="vmctl-lab-test-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


@pytest.mark.skipif(not ROOT, reason="the lab's checks run after its root check")
def test_the_lab_checks_its_directory_and_inventory_before_anything_starts(inv, tmp_path, open_dir):
    _programs_or_skip()
    if net.anchored_dir() or net.link_exists(net.BRIDGE):
        pytest.skip("a lab is up on this machine")

    def refused(lab_dir: Path, code: str) -> str:
        r = lab_cli(inv, "lab", "up", "--dir", str(lab_dir))
        assert r.returncode == 1 and r.stdout == "" and r.stderr.startswith(f"vmctl: {code}: "), r.stderr
        assert not net.link_exists(net.BRIDGE)
        return r.stderr

    # QEMU runs unprivileged in the hosts: DIR must be reachable by others
    private = tmp_path / "lab"
    tmp_path.chmod(0o700)
    assert f"cannot reach {tmp_path} (mode 0700)" in refused(private, "INVALID_VALUE")
    assert not private.exists()
    # a directory that is not empty belongs to something else
    busy = open_dir / "busy"
    busy.mkdir()
    (busy / "keep").write_text("mine")
    refused(busy, "INVALID_VALUE")
    assert [p.name for p in busy.iterdir()] == ["keep"]
    # every check passes: a dry run shows what up would build, and starts nothing
    r = lab_cli(inv, "--dry-run", "-f", "json", "lab", "up", "--hosts", "3", "--dir", str(open_dir / "lab"))
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(h["name"], h["address"], h["pid"]) for h in rows] == [
        ("lab1", "10.201.0.11", 0),
        ("lab2", "10.201.0.12", 0),
        ("lab3", "10.201.0.13", 0),
    ]
    assert not (open_dir / "lab").exists() and not net.link_exists(net.BRIDGE) and not inv.db.exists()
    # the inventory already has a pool named lab
    lab_cli(inv, "pool-create", "name-label=lab")
    before = lab_cli(inv, "-f", "json", "pool-list", "--", "journal-list").stdout
    assert "--db PATH" in refused(open_dir / "lab", "LAB_POOL_EXISTS")
    assert not (open_dir / "lab").exists()
    assert lab_cli(inv, "-f", "json", "pool-list", "--", "journal-list").stdout == before


# --- pieces -----------------------------------------------------------------------------------------------
def test_a_process_is_known_by_pid_and_start_time():
    me = read_stat(os.getpid())
    assert me is not None and Proc(os.getpid(), me[1], "me").alive()
    # the same pid with another start time is another process: never signalled as ours
    assert not Proc(os.getpid(), me[1] + 1, "an older process").alive()
    child = subprocess.Popen(["true"])
    for _ in range(200):  # exited but not reaped: a zombie counts as gone
        st = read_stat(child.pid)
        if st is not None and st[0] == "Z":
            break
        time.sleep(0.01)
    assert read_stat(child.pid)[0] == "Z"  # type: ignore[index]
    assert not Proc(child.pid, read_stat(child.pid)[1], "zombie").alive()  # type: ignore[index]
    child.wait()
    assert read_stat(child.pid) is None


def test_an_inventory_url_with_credentials_stays_out_of_the_shared_state(tmp_path):
    lab = LabState(dir=str(tmp_path))
    lab.inventory = {"db": "postgresql://ops:s3cret@db.example/vmctl", "pool": "p"}
    lab.save()
    assert "s3cret" not in (tmp_path / "lab.json").read_text()
    secret = tmp_path / "inventory-url"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert load(str(tmp_path)).inventory["db"] == "postgresql://ops:s3cret@db.example/vmctl"  # type: ignore[union-attr]


class _Pw:
    def __init__(self, home: str):
        self.pw_dir = home


def test_under_sudo_the_lab_registers_in_the_invoking_users_inventory(tmp_path):
    users = {"ann": _Pw(str(tmp_path / "ann"))}

    def getpwnam(name):
        return users[name]

    sudo = {"SUDO_USER": "ann", "SUDO_UID": "1000", "SUDO_GID": "1001"}
    db, owner = registry.inventory(Options(), sudo, getpwnam)
    assert db == str(tmp_path / "ann" / ".local" / "share" / "vmctl" / "inventory.db")
    assert owner == (1000, 1001)
    # --db and VMCTL_DB win; root itself, or an unknown user: root's own default inventory
    assert registry.inventory(Options(db="/x.db"), sudo, getpwnam) == ("/x.db", None)
    assert registry.inventory(Options(), {**sudo, "VMCTL_DB": "/y.db"}, getpwnam) == ("/y.db", None)
    assert registry.inventory(Options(), {**sudo, "SUDO_UID": "0"}, getpwnam) == (None, None)
    assert registry.inventory(Options(), {**sudo, "SUDO_USER": "bob"}, getpwnam) == (None, None)
    assert registry.inventory(Options(), {}, getpwnam) == (None, None)


@pytest.mark.skipif(not ROOT, reason="chown needs root")
def test_the_sudo_users_inventory_is_given_back_to_them(tmp_path):
    home = tmp_path / "ann"
    home.mkdir()
    db = home / ".local" / "share" / "vmctl" / "inventory.db"
    db.parent.mkdir(parents=True)
    for f in (db, Path(f"{db}-wal")):
        f.write_text("")
    registry.give_back(str(db), (65534, 65534))
    for p in (db, Path(f"{db}-wal"), db.parent, home / ".local" / "share", home / ".local"):
        assert (p.stat().st_uid, p.stat().st_gid) == (65534, 65534), p
    assert home.stat().st_uid == 0  # above what the inventory needed: untouched


@pytest.mark.skipif(not ROOT, reason="links and mounts need root")
def test_teardown_undoes_exactly_what_the_state_records(tmp_path):
    """A half-made lab: a link, a mount, a process, a made directory, as `up` records them."""
    from vmctl.lab import teardown
    from vmctl.lab.shared import mounted

    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    lab = LabState(dir=str(lab_dir), made_dir=True)
    link, made = "vmctl-labt9", tmp_path / "made"
    lab.add("links", link)
    subprocess.run(["ip", "link", "add", link, "type", "bridge"], check=True)
    lab.add("made_paths", str(made))
    made.mkdir()
    target = lab_dir / "m"
    target.mkdir()
    lab.add("mounts", str(target))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "vmctl-lab-test", str(target)], check=True)
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    lab.add_proc(sleeper.pid, "a lab process")
    lab.add("links", "vmctl-labt8")  # recorded but never made (up failed just before): fine
    unrelated = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        assert teardown(lab) == []
        assert sleeper.wait(5) == -signal.SIGTERM
        assert unrelated.poll() is None  # a process the state does not name is left alone
        assert not net.link_exists(link) and not mounted(str(target))
        assert not made.exists() and not lab_dir.exists()
    finally:
        unrelated.kill()
        unrelated.wait()
        if mounted(str(target)):
            subprocess.run(["umount", str(target)])
        if net.link_exists(link):
            subprocess.run(["ip", "link", "del", link])
