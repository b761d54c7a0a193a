"""The lab's shared storage: DIR/shared, a FUSE `bindfs` mount of DIR/shared.data with the subtype
`glusterfs`. libvirt allows a live migration with a disk on shared storage only on a filesystem
it knows to be shared (plain ext4 is refused, code 81), and it recognises a FUSE mount by its
subtype. The mount is made in the root namespace before any host exists, so every host's mount
namespace starts with a copy of it: one directory, one set of files, seen by all."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from vmctl.lab.proc import run, wait_for
from vmctl.lab.state import LabState

MOUNT = "shared"
DATA = "shared.data"


def path(lab: LabState) -> str:
    return os.path.join(lab.dir, MOUNT)


def mount(lab: LabState, programs: dict[str, str]) -> None:
    data, target = Path(lab.dir) / DATA, Path(path(lab))
    data.mkdir()
    target.mkdir()
    lab.add("mounts", str(target))
    with open(Path(lab.dir) / "bindfs.log", "ab") as log:
        p = subprocess.Popen(
            [programs["bindfs"], "-f", "-o", "allow_other,subtype=glusterfs", str(data), str(target)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    lab.add_proc(p.pid, "bindfs (shared SR)")
    wait_for("the shared SR mount", lambda: mounted(str(target)), 10, lambda: _ended(p))


def _ended(p: subprocess.Popen) -> str | None:
    return None if p.poll() is None else f"bindfs ended with status {p.returncode}"


def mounted(target: str) -> bool:
    """Whether `target` is a mount point in our mount namespace."""
    return target in mount_points()


def mount_points() -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        return [_unescape(line.split()[4]) for line in f]


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash in octal
    for code, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, ch)
    return field


def unmount(target: str, umount: str) -> bool:
    """Unmount (lazily when busy); whether it is gone."""
    if not mounted(target):
        return True
    if run([umount, target], check=False).returncode != 0:
        run([umount, "-l", target], check=False)
    return not mounted(target)
