"""Comparing a real host with the inventory (drivers.md §4, `host-sync`, `pool-sync`).

The hosts are the truth: a difference is reported as what the inventory says against what the
host has, and `--fix` makes the inventory describe the host (each repair journalled with the
command), never the reverse. What a host has and vmctl does not know (a domain someone started
with virsh, a file in an SR's directory) is listed, never adopted or removed. A pending task
whose vmctl process is gone (killed mid-operation) is reported; `--fix` closes it as
interrupted once the records it holds were compared with the hosts.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from vmctl import drivers
from vmctl import volumes as vols
from vmctl.drivers.base import DriverFault
from vmctl.errors import VmctlError


@dataclass
class Finding:
    """One difference: `text` says inventory vs host; `repair` (if any) makes the records follow."""

    cls: str
    uuid: str
    text: str
    repair: object = None  # callable(txn) -> str, what it did
    migrating: bool = False  # a live migration holds the VM: nothing about it is repaired yet

    def line(self) -> str:
        return f"{self.cls} {self.uuid}: {self.text}"


def compare_host(txn, host: dict) -> list[Finding]:
    """Every difference between one host of a real pool and the inventory, in a stable order."""
    driver = drivers.driver_for(txn, host["pool"])
    if driver is None:
        raise VmctlError(
            "OPERATION_NOT_ALLOWED",
            params=[
                (
                    "reason",
                    f"Host {host['name-label']} is in a simulated pool: there is no real host to compare",
                )
            ],
        )
    target = drivers.host_target(host)
    try:
        domains = driver.domains(target)
    except DriverFault as e:
        out = [Finding("host", host["uuid"], f"unreachable at {target.uri}: {' '.join(e.message.split())}")]
        if host["live"]:
            out[0].repair = lambda t, h=host["uuid"]: _set_live(t, h, False)
        return out
    found: list[Finding] = []
    if not host["live"]:
        found.append(
            Finding(
                "host",
                host["uuid"],
                "inventory says not live, the host answers",
                lambda t, h=host["uuid"]: _set_live(t, h, True),
            )
        )
    found += _compare_domains(txn, host, domains)
    for sr in _host_srs(txn, host):
        try:
            volumes = driver.volumes(target, vols.sr_target(txn, sr, host["uuid"]))
        except DriverFault as e:
            found.append(
                Finding(
                    "sr", sr["uuid"], f"cannot be read on {host['name-label']}: {' '.join(e.message.split())}"
                )
            )
            continue
        found += _compare_volumes(txn, sr, host, volumes)
    from vmctl import host_switches

    found += [Finding(*f) for f in host_switches.compare(txn, host, driver, target)]  # bridges, ports
    return found


def _set_live(txn, host_uuid: str, live: bool) -> str:
    txn.update("host", host_uuid, {"live": live})
    return f"marked it {'live' if live else 'not live'}"


def _state(libvirt_state: str) -> str:
    return libvirt_state if libvirt_state in ("running", "paused", MIGRATING) else "halted"


MIGRATING = "migrating"  # a live migration holds the domain paused: its outcome is not known yet


def _compare_domains(txn, host: dict, domains: dict[str, str]) -> list[Finding]:
    out: list[Finding] = []
    name = host["name-label"]
    resident = {v["uuid"]: v for v in txn.select("vm", resident_on=host["uuid"])}
    for uuid in sorted(set(domains)):
        if _state(domains[uuid]) == MIGRATING:
            # neither end is the truth yet: nothing is repaired until the migration ends
            text = f"a live migration is in progress on {name} (not changed: host-sync again once it ends)"
            out.append(Finding("vm" if txn.get("vm", uuid) else "domain", uuid, text, migrating=True))
    for uuid in sorted(resident):
        vm = resident[uuid]
        real = _state(domains.get(uuid, "halted"))
        if real == MIGRATING:
            continue
        if real == vm["power-state"]:
            continue
        text = f"inventory says {vm['power-state']} on {name}, the host has it {real}"
        out.append(Finding("vm", uuid, text, lambda t, u=uuid, s=real: _follow_state(t, u, s, host["uuid"])))
    for uuid in sorted(domains):
        real = _state(domains[uuid])
        if uuid in resident or real in ("halted", MIGRATING):
            continue
        vm = txn.get("vm", uuid)
        if vm is None:
            out.append(Finding("domain", uuid, f"{real} on {name}, unknown to the inventory (not changed)"))
            continue
        where = txn.get("host", vm["resident-on"]) if vm["resident-on"] else None
        said = f"{vm['power-state']}" + (f" on {where['name-label']}" if where else "")
        text = f"inventory says {said}, the host {name} has it {real}"
        out.append(Finding("vm", uuid, text, lambda t, u=uuid, s=real: _follow_state(t, u, s, host["uuid"])))
    return out


def follow_domain(txn, vm_uuid: str, state: str, host_uuid: str) -> str:
    """Make one VM's records follow its domain's state on a host, as --fix does (the manager, on a
    lifecycle event: vmctl/daemon/events.py); what it did."""
    return _follow_state(txn, vm_uuid, state, host_uuid)


def _follow_state(txn, vm_uuid: str, state: str, host_uuid: str) -> str:
    from vmctl import vms

    vm = txn.get("vm", vm_uuid)
    if state == "halted" and vm["resident-on"] != host_uuid:
        # a repair before this one (the guest found running on another host, e.g. after a
        # migration whose vmctl was killed) already moved it there: this host has nothing of it
        where = txn.get("host", vm["resident-on"]) if vm["resident-on"] else None
        return f"left it {vm['power-state']}" + (f" on {where['name-label']}" if where else "")
    if state == "halted":
        if vm["power-state"] == "suspended":
            return "left it suspended (its image is not on a host)"
        vms.hard_halt(txn, vm)
        return "marked it halted"
    if vm["resident-on"] and vm["resident-on"] != host_uuid:
        vms.leave(txn, vm, "halted")
        vm = txn.get("vm", vm_uuid)
    if vm["resident-on"] == host_uuid:
        txn.update("vm", vm_uuid, {"power-state": state})
    else:
        if vm["power-state"] == "suspended":
            vm = vms.discard_suspend_image(txn, txn.update("vm", vm_uuid, {"power-state": "halted"}))
        vms.boot(txn, vm, host_uuid, paused=state == "paused")
    return f"marked it {state} on {txn.get('host', host_uuid)['name-label']}"


def _host_srs(txn, host: dict) -> list[dict]:
    out = []
    for pbd in txn.select("pbd", host=host["uuid"]):
        sr = txn.get("sr", pbd["sr"])
        if sr is not None and pbd["currently-attached"] and sr["type"] in vols.SUPPORTED_SR_TYPES:
            out.append(sr)
    return sorted(out, key=lambda s: s["uuid"])


def _compare_volumes(txn, sr: dict, host: dict, volumes: dict) -> list[Finding]:
    out: list[Finding] = []
    vdis = {d["uuid"]: d for d in txn.select("vdi", sr=sr["uuid"]) if d["type"] != "iso"}
    files = {uuid: vols.file_of(d) for uuid, d in vdis.items()}  # a VDI's file is its location
    for uuid in sorted(vdis):
        d = vdis[uuid]
        if files[uuid] not in volumes:
            text = f"its volume is missing from SR {sr['name-label']} on {host['name-label']}"
            out.append(Finding("vdi", uuid, text, lambda t, u=uuid: _forget_vdi(t, u)))
            continue
        st = volumes[files[uuid]]
        changes = {}
        if st.capacity != d["virtual-size"]:
            changes["virtual-size"] = st.capacity
        if st.allocation != d["physical-utilisation"]:
            changes["physical-utilisation"] = st.allocation
        if "virtual-size" in changes:
            text = (
                f"inventory says virtual-size {d['virtual-size']}, the volume has virtual-size {st.capacity}"
            )
            out.append(Finding("vdi", uuid, text, lambda t, u=uuid, c=changes: _set_sizes(t, u, c)))
        elif changes:
            # the allocation of a thin volume moves with every guest write: followed on --fix, not reported
            out.append(Finding("vdi", uuid, "", lambda t, u=uuid, c=changes: _set_sizes(t, u, c)))
    for name in sorted(set(volumes) - set(files.values())):
        # base files a chain still reads through are kept after their records merged: listed too
        out.append(
            Finding(
                "volume",
                name,
                f"on SR {sr['name-label']} ({host['name-label']}), unknown to the inventory (not changed)",
            )
        )
    return out


def _forget_vdi(txn, vdi_uuid: str) -> str:
    from vmctl import storage

    d = txn.get("vdi", vdi_uuid)
    storage.destroy_vdi(txn, d, "forget", check=False)
    return "forgot it (and its VBDs)"


def _set_sizes(txn, vdi_uuid: str, changes: dict) -> str:
    txn.update("vdi", vdi_uuid, changes)
    return "recorded " + ", ".join(f"{k} {v}" for k, v in sorted(changes.items()))


# --- tasks left by a killed vmctl -----------------------------------------------------------------
def stale_tasks(txn, hosts: set[str] | None = None) -> list[Finding]:
    """Pending tasks whose vmctl process is gone (same machine, pid no longer alive)."""
    node = socket.gethostname()
    out = []
    for t in sorted(txn.select("task", status="pending"), key=lambda r: r["uuid"]):
        oc = t["other-config"]
        if oc.get("node") != node or not oc.get("pid", "").isdigit() or _alive(int(oc["pid"])):
            continue
        text = f"interrupted ({t['name-label']}; pid {oc['pid']} is gone): {oc.get('actions', '')}"
        out.append(Finding("task", t["uuid"], text, lambda tx, u=t["uuid"]: _close_interrupted(tx, u)))
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _other_ends(txn, stale: list[Finding], compared: set[str]) -> list[Finding]:
    """A migration whose vmctl was killed has two ends, its VM's resident-on and
    scheduled-to-be-resident-on: libvirt went on without vmctl, so the guest may run on either.
    The end not among the compared hosts is looked at too, for that VM only (host-sync host=H
    of one end then finds the guest wherever it went)."""
    out: list[Finding] = []
    for f in stale:
        for key in txn.get("task", f.uuid)["objects"]:
            cls, uuid = key.split(":", 1)
            vm = txn.get("vm", uuid) if cls == "vm" else None
            if vm is None or not vm["scheduled-to-be-resident-on"]:
                continue
            for end in (vm["resident-on"], vm["scheduled-to-be-resident-on"]):
                host = txn.get("host", end) if end and end not in compared else None
                if host is None:
                    continue
                try:
                    state = drivers.driver_for(txn, host["pool"]).domains(drivers.host_target(host)).get(uuid)
                except DriverFault as e:
                    text = f"cannot be looked for on {host['name-label']}: {' '.join(e.message.split())}"
                    out.append(Finding("vm", uuid, text))
                    continue
                if state is None or _state(state) == "halted":
                    continue
                mine = {uuid: state}
                out += [g for g in _compare_domains(txn, host, mine) if g.uuid == uuid]
    return out


def _close_interrupted(txn, task_uuid: str) -> str:
    from vmctl.store.txn import now_iso

    t = txn.get("task", task_uuid)
    for key in t["objects"]:
        cls, uuid = key.split(":", 1)
        row = txn.get(cls, uuid)
        if row is not None and row.get("current-operations"):
            txn.update(cls, uuid, {"current-operations": []})
        if cls == "vm" and row is not None and row["scheduled-to-be-resident-on"] and row["resident-on"]:
            # a migration that was in flight: the VM is where the comparison above found it
            txn.update(cls, uuid, {"scheduled-to-be-resident-on": ""})
    txn.update(
        "task",
        task_uuid,
        {"status": "failure", "finished": now_iso(), "error-code": "INTERRUPTED", "error-params": {}},
    )
    return "closed it as interrupted (the records above now follow the hosts)"


def run(txn, hosts: list[dict], fix: bool) -> tuple[list[str], bool]:
    """Compare hosts (and stale tasks), repair on --fix; the report lines, and whether anything
    is left that differs (unknown objects are listed but never count: vmctl leaves them be)."""
    stale = stale_tasks(txn)
    compared: list[Finding] = []
    for h in hosts:
        compared += compare_host(txn, h)
    # the other ends first: once a guest is recorded where it runs, "gone from its old host" is
    # no longer a halt
    findings = stale + _other_ends(txn, stale, {h["uuid"] for h in hosts}) + compared
    # a task whose VM is still migrating stays open: its outcome is not known yet
    migrating = {f"vm:{f.uuid}" for f in findings if f.migrating}
    for f in findings:
        if f.cls == "task" and migrating & set(txn.get("task", f.uuid)["objects"]):
            f.repair = None
            f.text += " (its VM is still migrating: not closed)"
    lines: list[str] = []
    left = False
    if fix:
        for f in findings:
            if f.cls == "task":
                txn.release(f.uuid)
        with drivers.records_only(txn):
            # tasks last: their objects are compared (and repaired) first
            for f in [f for f in findings if f.cls != "task"] + [f for f in findings if f.cls == "task"]:
                if f.repair is not None:
                    did = f.repair(txn)  # type: ignore[operator]
                    if f.text:
                        lines.append(f"fixed {f.line()}: {did}")
                elif f.text:
                    lines.append(f.line())
                    left = left or f.cls not in ("domain", "volume")
    else:
        for f in findings:
            if f.text:
                lines.append(f.line())
                left = left or f.cls not in ("domain", "volume")
    return lines, left
