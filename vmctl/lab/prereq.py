"""What `lab up` needs before it starts anything: root, and the programs of a few Debian packages
(drivers.md §5). A missing one is reported in one line with the exact command that installs it."""

from __future__ import annotations

import os
import shutil

from vmctl.errors import VmctlError

# program -> the Debian package that provides it (in the order the lab uses them)
PROGRAMS = {
    "ip": "iproute2",
    "unshare": "util-linux",
    "tini": "tini",
    "bindfs": "bindfs",
    "qemu-img": "qemu-utils",
    "qemu-system-x86_64": "qemu-system-x86",
    "virtlogd": "libvirt-daemon-system",
    "libvirtd": "libvirt-daemon-system",
    "virsh": "libvirt-clients",
    "ovsdb-tool": "openvswitch-switch",
    "ovsdb-server": "openvswitch-switch",
    "ovs-vswitchd": "openvswitch-switch",
    "ovs-vsctl": "openvswitch-switch",
}
# libvirt-python has no wheel: it builds against the system's libvirt (drivers.md §1)
PYTHON_BUILD_PACKAGES = ("libvirt-dev", "pkg-config", "gcc", "python3-dev")
PIP_LINE = "pip install libvirt-python"
# every package the lab needs, for the documentation and CI
PACKAGES = (
    "qemu-utils",
    "qemu-system-x86",
    "libvirt-daemon-system",
    "libvirt-clients",
    *PYTHON_BUILD_PACKAGES,
    "tini",
    "bindfs",
    "openvswitch-switch",
)
# daemons live in sbin, which a non-login root shell may lack in its PATH
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def find(program: str) -> str | None:
    path = os.environ.get("PATH", os.defpath)
    return shutil.which(program, path=os.pathsep.join([path, *_SBIN]))


def has_libvirt_python() -> bool:
    import importlib.util

    return importlib.util.find_spec("libvirt") is not None


def programs() -> dict[str, str]:
    """Every program the lab runs, by absolute path. Raises LAB_PACKAGES_MISSING or LAB_NEEDS_ROOT
    (one line, nothing started) when something is missing."""
    found = {p: find(p) for p in PROGRAMS}
    missing = [p for p, where in found.items() if where is None]
    packages = list(dict.fromkeys(PROGRAMS[p] for p in missing))
    no_python = not has_libvirt_python()
    if no_python:
        missing.append("the Python module libvirt")
        packages.extend(p for p in PYTHON_BUILD_PACKAGES if p not in packages)
    root = os.geteuid() == 0
    if missing:
        install = f"apt-get install -y {' '.join(packages)}"
        if no_python:
            install += f" && {PIP_LINE}"
        raise VmctlError(
            "LAB_PACKAGES_MISSING",
            f"vmctl lab needs {', '.join(missing)}: {install}" + ("" if root else " (as root)"),
        )
    if not root:
        raise VmctlError(
            "LAB_NEEDS_ROOT",
            "vmctl lab up and down need root (they make namespaces, links and mounts): "
            "run them as root, e.g. sudo vmctl lab up",
        )
    return {p: str(where) for p, where in found.items()}
