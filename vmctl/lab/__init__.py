"""`vmctl lab up|status|down`: N real libvirt hosts on this machine, registered in the inventory
(drivers.md §5), so that vmctl can be tried on real guests in seconds.

    net.py       the bridge in the root namespace, one veth pair per host
    shared.py    the shared SR directory (FUSE bindfs, subtype glusterfs)
    hosts.py     one host: its directory, its init script, its namespaces and daemons
    registry.py  the lab's pool in the inventory
    state.py     DIR/lab.json: everything made, so that down undoes exactly that

Everything lives under DIR. `up` records each thing before or as it makes it; a failure half-way
undoes what was made, as `down` does. Nothing is ever found or stopped by name: processes by pid
and start time, links, mounts and paths as recorded.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import sys
import time

from vmctl.errors import VmctlError
from vmctl.lab import net, prereq, registry, shared
from vmctl.lab.proc import wait_for
from vmctl.lab.state import LabState, load, namespace_id

DEFAULT_HOSTS = 2
STATUS_FIELDS = ["name", "address", "driver-uri", "ovsdb", "pid"]


def default_dir() -> str:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(runtime, "vmctl-lab") if runtime else "/run/vmctl-lab"


def find_dir(given: str | None) -> str:
    """DIR as given, else that of the lab whose bridge exists here, else the default."""
    return check_dir(given) if given else net.anchored_dir() or default_dir()


def check_dir(given: str) -> str:
    d = os.path.abspath(given)
    # the path goes into shell scripts, libvirt's and ip's configuration as one word
    if any(c.isspace() or not c.isprintable() or c in "\"'\\" for c in d):
        raise VmctlError(
            "INVALID_VALUE",
            "The lab directory's path must not hold spaces, quotes, backslashes or control characters",
            [("name", "--dir"), ("value", given)],
        )
    return d


# --- up ----------------------------------------------------------------------------------------------------
def up(opts, count: int, dir_: str | None, argv: list[str]) -> int:
    from vmctl.lab import hosts

    d = check_dir(dir_) if dir_ else default_dir()
    programs = prereq.programs()
    _check_not_up(d)
    db, owner = registry.inventory(opts)
    registry.check_free(opts, db, argv)
    lab = LabState(dir=d, hosts=hosts.plan(count))
    if opts.dry_run:  # every check passed: what up would build, and nothing started
        _write_rows(opts, [h.row() for h in lab.hosts], opts.fmt)
        return 0
    t0 = time.monotonic()
    # a termination or a closed terminal undoes what was made, as Ctrl-C does
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    lab.made_dir = not os.path.exists(d)
    os.makedirs(d, mode=0o755, exist_ok=True)
    lab.save()
    try:
        net.make_bridge(lab, programs["ip"])
        _make_mount_points(lab)
        shared.mount(lab, programs)
        for i, h in enumerate(lab.hosts):
            hosts.prepare(lab, h, programs, first=i == 0)
        hosts.start_all(lab, programs)
        from vmctl.store.txn_paths import default_db

        lab.inventory = {"db": db or default_db(), "owner": list(owner) if owner else None}
        lab.save()
        lab.inventory["pool"] = registry.register(lab, opts, lab.inventory["db"], argv)
        registry.give_back(lab.inventory["db"], owner)
        lab.ready = True
        lab.save()
    except BaseException:
        for sig in (signal.SIGINT, *previous):  # the undoing itself is not interrupted
            signal.signal(sig, signal.SIG_IGN)
        if lab.inventory.get("pool"):  # registered, then something failed: the records go too
            try:
                registry.unregister(lab, opts, argv)
            except VmctlError as e:
                sys.stderr.write(f"vmctl: lab up failed; the pool lab stays in the inventory: {e.message}\n")
        left = teardown(lab)
        if left:
            sys.stderr.write(f"vmctl: lab up failed and could not undo: {'; '.join(left)}\n")
        raise
    finally:
        for sig, handler in {signal.SIGINT: signal.default_int_handler, **previous}.items():
            signal.signal(sig, handler)
    if not opts.quiet:
        if opts.fmt == "table":  # the other formats print the rows alone, as status does
            sys.stdout.write(
                f"lab: {count} host{'s' if count > 1 else ''} up in {time.monotonic() - t0:.1f} s, "
                f"pool {registry.POOL} in {lab.inventory['db']} (directory {d})\n"
            )
        _write_rows(opts, [h.row() for h in lab.hosts], opts.fmt)
    return 0


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _check_not_up(d: str) -> None:
    anchored = net.anchored_dir()
    if anchored is not None or net.link_exists(net.BRIDGE):
        raise VmctlError(
            "LAB_ALREADY_UP",
            "A lab is already up on this machine: vmctl lab status shows it, vmctl lab down removes it",
            [("dir", anchored or "?")],
        )
    if load(d) is not None:
        raise VmctlError(
            "LAB_ALREADY_UP",
            "The directory holds a lab's state: vmctl lab down --dir DIR removes what is left of it",
            [("dir", d)],
        )
    _check_reachable(d)
    if os.path.isdir(d) and os.listdir(d):
        raise VmctlError(
            "INVALID_VALUE",
            "The lab directory must be new or empty: everything in it belongs to the lab",
            [("name", "--dir"), ("value", d)],
        )


def _check_reachable(d: str) -> None:
    """QEMU runs as an unprivileged user in the hosts (as on real ones) and opens the disks on
    the shared SR under DIR: every directory above must let others through."""
    path = d
    while True:
        if os.path.isdir(path) and not os.stat(path).st_mode & stat.S_IXOTH:
            raise VmctlError(
                "INVALID_VALUE",
                f"QEMU in the lab's hosts runs unprivileged and cannot reach {path} (mode "
                f"{stat.S_IMODE(os.stat(path).st_mode):04o}): choose another --dir, or chmod o+x {path}",
                [("name", "--dir"), ("value", d)],
            )
        if path == "/":
            return
        path = os.path.dirname(path)


def _make_mount_points(lab: LabState) -> None:
    """The directories each host mounts its private copies over must exist on the machine (the
    packages make /run/libvirt and /run/openvswitch only when their services start)."""
    from vmctl.lab.hosts import PRIVATE_DIRS

    for p in PRIVATE_DIRS:
        if not os.path.isdir(p):
            lab.add("made_paths", p)
            os.makedirs(p, mode=0o755)


# --- status ------------------------------------------------------------------------------------------------
def status(opts, dir_: str | None, fmt: str | None) -> int:
    d = find_dir(dir_)
    lab = load(d)
    if lab is None:
        raise VmctlError("LAB_NOT_UP", "No lab is up: vmctl lab up builds one", [("dir", d)])
    stopped = [h.name for h in lab.hosts if not _host_running(lab, h)]
    if not lab.ready:
        sys.stderr.write("vmctl: warning: the lab is not complete (lab up did not finish)\n")
    elif stopped:
        sys.stderr.write(f"vmctl: warning: lab hosts not running: {', '.join(stopped)}\n")
    _write_rows(opts, [h.row() for h in lab.hosts], fmt or opts.fmt)
    return 0


def _host_running(lab: LabState, host) -> bool:
    return any(p.pid == host.pid and p.alive() for p in lab.procs)


def _write_rows(opts, rows: list[dict], fmt: str) -> None:
    from vmctl.cli import output

    if fmt not in ("table", "json", "yaml", "csv", "tsv"):
        raise VmctlError(
            "INVALID_VALUE",
            "The output format must be table, json, yaml, csv or tsv",
            [("name", "format"), ("value", fmt)],
        )
    sys.stdout.write(
        output.render_records(
            "lab-host",
            rows,
            STATUS_FIELDS,
            fmt,
            minimal=opts.minimal,
            no_headings=opts.no_headings,
            tty=output.stdout_isatty(),
        )
    )


# --- down --------------------------------------------------------------------------------------------------
def down(opts, dir_: str | None, argv: list[str]) -> int:
    d = find_dir(dir_)
    lab = load(d)
    if lab is None:
        if not opts.quiet:
            sys.stdout.write(f"lab: no lab is up (nothing in {d})\n")
        return 0
    if os.geteuid() != 0:
        raise VmctlError(
            "LAB_NEEDS_ROOT", "vmctl lab down needs root: run it as root, e.g. sudo vmctl lab down"
        )
    t0 = time.monotonic()
    registry.unregister(lab, opts, argv)
    owner = (lab.inventory or {}).get("owner")
    registry.give_back((lab.inventory or {}).get("db"), tuple(owner) if owner else None)
    left = teardown(lab)
    if left:
        raise VmctlError("LAB_FAILED", f"lab down could not remove: {'; '.join(left)}", [("dir", d)])
    if not opts.quiet:
        sys.stdout.write(f"lab: down in {time.monotonic() - t0:.1f} s\n")
    return 0


def teardown(lab: LabState) -> list[str]:
    """Undo everything the state records, in reverse: the hosts (and every process in their PID
    namespaces), the root namespace's mounts, the lab's other processes, its links, the mount
    points it made, DIR. Returns what could not be undone (empty: nothing of the lab remains)."""
    ip = prereq.find("ip") or "ip"
    umount = prereq.find("umount") or "umount"
    left: list[str] = []
    # A host's init is PID 1 of its PID namespace: when it dies the kernel kills every process
    # of that namespace (libvirtd, QEMU, OVS...), and its namespaces go with the last of them.
    inits = {h.pid for h in lab.hosts}
    for p in lab.procs:
        if p.pid in inits and p.alive():
            _kill(p.pid, signal.SIGKILL)
    pidns = {h.namespaces.get("pid") for h in lab.hosts} - {None}
    try:
        wait_for("stopping the hosts", lambda: not _in_namespaces(pidns), 15)
    except VmctlError:
        left.append("processes in the hosts' namespaces")
    for m in reversed(lab.mounts):
        if not shared.unmount(m, umount):
            left.append(f"mount {m}")
    # bindfs ends with its mount, unshare with its host's init: signal only those still there
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        alive = [p for p in lab.procs if p.alive()]
        for p in alive:
            _kill(p.pid, sig)
        if alive:
            try:
                wait_for("stopping the lab's processes", lambda: not any(p.alive() for p in lab.procs), grace)
            except VmctlError:
                pass
    left += [f"process {p.pid} ({p.what})" for p in lab.procs if p.alive()]
    left += [f"link {name}" for name in net.remove_links(lab, ip)]
    for p in reversed(lab.made_paths):
        try:
            os.rmdir(p)
        except FileNotFoundError:
            pass
        except OSError:
            left.append(f"directory {p} (not empty)")
    below = [m for m in shared.mount_points() if m == lab.dir or m.startswith(lab.dir.rstrip("/") + "/")]
    if below:  # never delete through a mount
        left += [f"mount {m}" for m in below if f"mount {m}" not in left]
    elif not left:
        _remove_dir(lab)
    return left


def _remove_dir(lab: LabState) -> None:
    if lab.made_dir:
        shutil.rmtree(lab.dir, ignore_errors=True)
        return
    for entry in os.scandir(lab.dir):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            os.unlink(entry.path)


def _in_namespaces(pidns: set) -> bool:
    """Whether any process is still in one of these PID namespaces."""
    if not pidns:
        return False
    for entry in os.listdir("/proc"):
        if entry.isdigit() and namespace_id(int(entry), "pid") in pidns:
            return True
    return False


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
