"""Moving a VM to another host as vm-migrate does (engine.md §4), shared by vm-migrate,
host-evacuate and pool-rebalance: storage motion, the move itself through the power-transition
hooks, and the prediction recorded for the journal."""

from __future__ import annotations

import json

from vmctl import hooks
from vmctl.vms import free_domid

LIVE_STATES = ("running", "paused")


COLD_STATES = ("halted", "suspended")


RECORD_KEY = "last-migration"


def storage_need(txn, vdi_map: dict[str, str]) -> dict[str, int]:
    """Bytes each target SR must have free for the copies, counted as vdi-copy counts a new copy
    (model.md §3.5: thick virtual-size, thin the bytes written along the chain)."""
    from vmctl import storage

    need: dict[str, int] = {}
    for vdi_uuid, sr_uuid in sorted(vdi_map.items()):
        vdi = txn.get("vdi", vdi_uuid)
        if vdi is None or vdi["sr"] == sr_uuid:
            continue
        need[sr_uuid] = need.get(sr_uuid, 0) + storage.copy_usage(vdi, vdi["provisioning"], txn)
    return need


def move_storage(txn, vm: dict, vdi_map: dict[str, str], quiet: bool = False) -> dict[str, str]:
    """Storage motion: each mapped VDI of the VM is copied to its target SR (as vdi-copy does, same
    provisioning), every VBD on the old VDI is repointed to the copy (a suspend image is followed
    too), and the old VDI is destroyed with the merge rule. Returns old → new VDI uuids. The
    caller has checked the space (:func:`storage_need`)."""
    from vmctl import storage

    targets = sorted({s for s in vdi_map.values()})
    before = storage.allocations(txn, targets)
    copies = copy_records(txn, vdi_map)
    switch_to_copies(txn, vm, copies)
    storage.overprovision_warning(txn, before, quiet)
    return copies


def copy_records(txn, vdi_map: dict[str, str], by_host: bool = True) -> dict[str, str]:
    """The copies of storage motion: a new VDI on its target SR for each mapped VDI not already
    there (old → new uuids). `by_host=False`: records only, a live migration copies the data."""
    from vmctl import storage

    copies: dict[str, str] = {}
    for vdi_uuid, sr_uuid in sorted(vdi_map.items()):
        vdi = txn.get("vdi", vdi_uuid)
        if vdi is None or vdi["sr"] == sr_uuid:
            continue  # already there: nothing to copy
        copies[vdi_uuid] = storage.copy_vdi(
            txn, vdi, txn.get("sr", sr_uuid), vdi["provisioning"], read_only=vdi["read-only"], by_host=by_host
        )
    return copies


def switch_to_copies(txn, vm: dict, copies: dict[str, str]) -> None:
    """The VM's VBDs (and its suspend image) move from each old VDI to its copy, and the old VDI
    is destroyed with the merge rule."""
    from vmctl import storage

    for vdi_uuid, new in sorted(copies.items()):
        for b in sorted(txn.select("vbd", vdi=vdi_uuid), key=lambda b: b["uuid"]):
            txn.update("vbd", b["uuid"], {"vdi": new})
        if vm["suspend-vdi"] == vdi_uuid:
            vm = txn.update("vm", vm["uuid"], {"suspend-vdi": new})
        storage.destroy_vdi(txn, txn.get("vdi", vdi_uuid), "migrate", check=False)


def relocate(
    txn,
    vm_uuid: str,
    dst: str,
    vdi_map: dict[str, str] | None = None,
    record: dict | None = None,
    quiet: bool = False,
    copies: dict[str, str] | None = None,
) -> dict:
    """Apply one migration to the inventory: leave the old host through the power-transition hooks, move
    the mapped disks, record the new residence (resident-on, a free domid on the new host), become
    resident through the hooks, and record the prediction (``other-config:last-migration``).
    A halted or suspended VM (``dst`` empty) only moves its disks. `copies` (old → new VDI):
    the copies were made beforehand (a live migration on a real host copied their data), the
    VM only switches to them."""

    vm = txn.get("vm", vm_uuid)
    old = vm["resident-on"] if vm["power-state"] in LIVE_STATES else ""
    if old:
        hooks.leaving_host(txn, vm, old)
    if copies:
        switch_to_copies(txn, vm, copies)
        moved = dict(copies)
    else:
        moved = move_storage(txn, vm, vdi_map, quiet) if vdi_map else {}
    vm = txn.get("vm", vm_uuid)
    changes: dict = {}
    if old and dst:
        changes = {
            "resident-on": dst,
            "domid": vm["domid"] if dst == old else free_domid(txn, dst, vm_uuid),
            "scheduled-to-be-resident-on": "",
        }
    if record is not None:
        rec = dict(record)
        if moved:
            rec["vdis"] = moved
        oc = dict(vm["other-config"])
        oc[RECORD_KEY] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
        changes["other-config"] = oc
    if changes:
        vm = txn.update("vm", vm_uuid, changes)
    if old and dst:
        hooks.became_resident(txn, vm, dst)
    return vm


def record_of(src: str, dst: str, pred: dict | None) -> dict:
    """What the journal keeps of one migration: endpoints and the engine's prediction."""
    rec = {"from": src, "to": dst}
    if pred:
        for k in ("rounds", "bytes", "storage-bytes", "total-time", "downtime", "stop-reason", "rate"):
            if k in pred:
                rec[k] = pred[k]
    return rec
