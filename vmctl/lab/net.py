"""The lab's network: one Linux bridge in the root namespace and one veth pair per host, whose
inner end is the host's eth0 (drivers.md §5). The root namespace has an address on the bridge, so
vmctl reaches every host's libvirtd and OVSDB from where it runs.

The bridge is also the lab's anchor: its alias names the lab's directory, so `lab status` and
`lab down` find the lab whatever DIR it was built in.
"""

from __future__ import annotations

import os

from vmctl.lab.proc import run
from vmctl.lab.state import LabState

BRIDGE = "vmctl-lab"
PREFIX = "10.201.0"
GATEWAY = f"{PREFIX}.1"
PREFIX_LEN = 24


def host_address(index: int) -> str:
    """Host `index` (1-based) is at 10.201.0.(10 + index)."""
    return f"{PREFIX}.{10 + index}"


def veth_name(index: int) -> str:
    return f"{BRIDGE}{index}"  # at most 11 characters: Linux allows 15


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def anchored_dir() -> str | None:
    """The directory of the lab whose bridge exists on this machine, if any."""
    try:
        with open(f"/sys/class/net/{BRIDGE}/ifalias", encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def make_bridge(lab: LabState, ip: str) -> None:
    lab.bridge, lab.gateway = BRIDGE, GATEWAY
    lab.add("links", BRIDGE)
    batch(
        ip,
        f"link add {BRIDGE} type bridge",
        f"link set {BRIDGE} alias {lab.dir}",
        f"addr add {GATEWAY}/{PREFIX_LEN} dev {BRIDGE}",
        f"link set {BRIDGE} up",
    )


def plug(lab: LabState, ip: str, index: int, netns_pid: int) -> None:
    """A veth pair: one end on the bridge, the other created directly inside the network
    namespace of `netns_pid`, already named eth0 (the host configures its address itself)."""
    veth = veth_name(index)
    lab.add("links", veth)
    batch(
        ip,
        f"link add {veth} type veth peer name eth0 netns {netns_pid}",
        f"link set {veth} master {BRIDGE} up",
    )


def remove_links(lab: LabState, ip: str) -> list[str]:
    """Delete every link the lab recorded that still exists (a veth goes with its namespace,
    usually before this runs); returns the ones that could not be deleted."""
    left = []
    for name in reversed(lab.links):
        if link_exists(name):
            r = run([ip, "link", "del", name], check=False)
            if r.returncode != 0 and link_exists(name):
                left.append(name)
    return left


def batch(ip: str, *commands: str) -> None:
    """Several `ip` commands in one process (`ip -batch`): one fork instead of one each."""
    run([ip, "-batch", "-"], input="\n".join(commands) + "\n")
