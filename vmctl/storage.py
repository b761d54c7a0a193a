"""Storage rules shared by the storage commands and by the compute and placement layers
(model.md §1.5-§1.6, §3.5, §3.9).

Stable helpers other layers call (all take the open transaction; rows are plain dicts):

* ``vm_srs(txn, vm) -> set[str]``: the SRs of the VDIs a VM uses (disks, CDs with a VDI and
  its suspend image) — what boot check (f) needs to be visible from a host.
* ``sr_visible(txn, sr_uuid, host_uuid) -> bool``: the SR has an attached PBD on that host.
* ``holding_conflicts(txn, vm, operation) -> list[VmctlError]`` / ``check_holding(...)``: the
  holding rule (``VDI_IN_USE [vdi, operation]``) for a VM about to hold its VDIs.
* ``sr_free_space(txn, sr)``, ``check_space(txn, {sr_uuid: bytes})`` (``SR_FULL [requested,
  maximum]``), ``overprovision_warning(txn, before, quiet)``.
* ``create_vdi(...)``, ``destroy_vdi(...)``, ``clone_vdi(...)``, ``copy_vdi(...)`` and
  ``merge_chain(...)``: the VDI life cycle with its accounting; vm-suspend creates its suspend
  image with ``create_vdi(txn, sr, size, provisioning="thick-lazy", type="suspend", ...)``.

Accounting (model.md §3.9): an SR's physical-utilisation is the sum of its VDIs'
physical-utilisation. A thick writable leaf uses its virtual-size; thin VDIs use the bytes
written; read-only children (snapshots) start at 0 and base copies keep what their child had.
"""

from __future__ import annotations

from collections.abc import Iterable

from vmctl import volumes
from vmctl.errors import VmctlError

MiB, GiB, TiB = 1024**2, 1024**3, 1024**4
ROUND = 2 * MiB  # VDI sizes are rounded up to a multiple of 2 MiB (model.md §1.6)
MAX_ANCESTORS = 30  # model.md §3.5 chains
# Largest VDI per SR type (model.md §1.5).
SR_MAX = {"file": 16 * TiB, "ext": 16 * TiB, "nfs": 16 * TiB, "lvm": 2040 * GiB, "iscsi": 2040 * GiB}
# SR types that grow a disk online: XAPI's VDI.resize_online needs the backend's
# VDI_RESIZE_ONLINE capability (Xapi_vdi.check_sm_feature_error), which none of these types' SM
# drivers advertises (xapi-project/sm: EXTSR, FileSR, NFSSR, LVHDSR, LVHDoISCSISR).
ONLINE_GROW: frozenset[str] = frozenset()
DEFAULT_PROVISIONING = {
    "file": "thin",
    "ext": "thin",
    "nfs": "thin",
    "lvm": "thick-lazy",
    "iscsi": "thick-lazy",
}
SHAREABLE_TYPES = {"nfs", "iscsi"}
HOLDING_STATES = ("running", "paused", "suspended")
RESIDENT_STATES = ("running", "paused")


# --- sizes and provisioning --------------------------------------------------------------------
def round_size(n: int) -> int:
    """Round a virtual size up to a multiple of 2 MiB."""
    return -(-n // ROUND) * ROUND


def is_thick(provisioning: str) -> bool:
    return provisioning in ("thick-lazy", "thick-eager")


def largest_vdi(sr: dict) -> int:
    return SR_MAX.get(sr["type"], 16 * TiB)


def leaf_usage(vdi: dict) -> int:
    """What a fresh writable or read-only child uses: thick writable reserves its size."""
    if is_thick(vdi["provisioning"]) and not vdi["read-only"]:
        return vdi["virtual-size"]
    return 0


# --- SR accounting -------------------------------------------------------------------------------
def sr_vdis(txn, sr_uuid: str) -> list[dict]:
    return txn.select("vdi", sr=sr_uuid)


def sr_utilisation(txn, sr_uuid: str) -> int:
    """Σ physical-utilisation of every VDI of the SR (base copies, snapshots, suspend images)."""
    return txn.total("vdi", "physical-utilisation", "sr", sr_uuid)


def sr_allocation(txn, sr_uuid: str) -> int:
    """Σ virtual-size of the SR's managed VDIs (model.md §1.5 virtual-allocation)."""
    return txn.total("vdi", "virtual-size", "sr", sr_uuid, only=("managed", True))


def sr_free_space(txn, sr: dict | str) -> int:
    row = sr if isinstance(sr, dict) else txn.get("sr", sr)
    return row["physical-size"] - sr_utilisation(txn, row["uuid"])


def check_space(txn, needs: dict[str, int]) -> None:
    """Every SR in `needs` (sr uuid -> bytes about to be consumed) has that much free space,
    all checked before anything changes: else `SR_FULL [requested, maximum]`, maximum being
    the SR's free-space (model.md §3.9)."""
    for sr_uuid in sorted(needs):
        want = needs[sr_uuid]
        if want <= 0:
            continue
        free = sr_free_space(txn, sr_uuid)
        if want > free:
            raise VmctlError(
                "SR_FULL",
                f"The SR {txn.ref('sr', sr_uuid).render()} has {max(free, 0)} bytes free, {want} are needed",
                [("requested", want), ("maximum", max(free, 0))],
            )


def allocations(txn, sr_uuids: Iterable[str]) -> dict[str, int]:
    """virtual-allocation per SR, taken before a command so that overprovision_warning can tell
    whether the command raised it."""
    return {u: sr_allocation(txn, u) for u in set(sr_uuids) if u}


def overprovision_warning(txn, before: dict[str, int], quiet: bool = False) -> None:
    """`vmctl: warning: SR <name> is overprovisioned (<ratio>)` for each SR whose
    virtual-allocation this command raised above its physical-size (model.md §3.9)."""
    if quiet:
        return
    for sr_uuid in sorted(before):
        sr = txn.get("sr", sr_uuid)
        if sr is None or sr["physical-size"] <= 0:
            continue
        after = sr_allocation(txn, sr_uuid)
        if after > before[sr_uuid] and after > sr["physical-size"]:
            txn.warn(f"SR {sr['name-label']} is overprovisioned ({after / sr['physical-size']:.2f})")


# --- visibility and holding -------------------------------------------------------------------------
def sr_attached(txn, sr_uuid: str) -> bool:
    """The SR has at least one attached PBD (else SR_HAS_NO_PBDS)."""
    return txn.exists("pbd", sr=sr_uuid, currently_attached=True)


def require_attached(txn, sr: dict) -> None:
    if not sr_attached(txn, sr["uuid"]):
        raise VmctlError("SR_HAS_NO_PBDS", "The SR has no attached PBD", [("sr", txn.ref("sr", sr))])


def sr_visible(txn, sr_uuid: str, host_uuid: str) -> bool:
    """An SR is visible from a host iff it has an attached PBD for it (model.md §1.5)."""
    return txn.exists("pbd", sr=sr_uuid, host=host_uuid, currently_attached=True)


def vm_vdis(txn, vm: dict) -> list[tuple[str, str]]:
    """(vdi uuid, mode) for each VBD of the VM that names a VDI."""
    return [(b["vdi"], b["mode"]) for b in txn.select("vbd", vm=vm["uuid"]) if b["vdi"]]


def vm_srs(txn, vm: dict) -> set[str]:
    """The SRs holding the VM's VDIs and its suspend image (boot check (f))."""
    out = set()
    for vdi_uuid, _mode in vm_vdis(txn, vm):
        d = txn.get("vdi", vdi_uuid)
        if d is not None:
            out.add(d["sr"])
    if vm.get("suspend-vdi"):
        d = txn.get("vdi", vm["suspend-vdi"])
        if d is not None:
            out.add(d["sr"])
    return out


def holders(txn, vdi_uuid: str, exclude: str | None = None) -> list[tuple[dict, str]]:
    """(vm, mode) of every VM holding the VDI: a VBD on it and running, paused or suspended."""
    out = []
    for b in txn.select("vbd", vdi=vdi_uuid):
        if b["vm"] == exclude:
            continue
        vm = txn.get("vm", b["vm"])
        if vm is not None and vm["power-state"] in HOLDING_STATES:
            out.append((vm, b["mode"]))
    return out


def vdi_conflict(txn, vdi_uuid: str, mode: str, vm_uuid: str | None) -> bool:
    """Would `vm_uuid` holding the VDI in `mode` break the holding rule (I4)? A non-sharable VDI
    held RW is held by no other VM; several RO holders are fine."""
    d = txn.get("vdi", vdi_uuid)
    if d is None or d["sharable"]:
        return False
    others = holders(txn, vdi_uuid, exclude=vm_uuid)
    if not others:
        return False
    return mode == "RW" or any(m == "RW" for _, m in others)


def in_use(txn, vdi: dict | str, operation: str) -> VmctlError:
    row = vdi if isinstance(vdi, dict) else txn.get("vdi", vdi)
    return VmctlError(
        "VDI_IN_USE",
        "The VDI is in use by a VM",
        [("vdi", txn.ref("vdi", row if row is not None else vdi)), ("operation", operation)],
    )


def holding_conflicts(txn, vm: dict, operation: str) -> list[VmctlError]:
    """The holding rule for a VM about to hold all its VDIs (vm-start, vm-resume, migrations):
    one `VDI_IN_USE [vdi, operation]` per conflicting VDI, in VBD device order."""
    out = []
    vbds = sorted(txn.select("vbd", vm=vm["uuid"]), key=lambda b: b["device"])
    for b in vbds:
        if b["vdi"] and vdi_conflict(txn, b["vdi"], b["mode"], vm["uuid"]):
            out.append(in_use(txn, b["vdi"], operation))
    return out


def check_holding(txn, vm: dict, operation: str) -> None:
    """Raise the first holding conflict, if any."""
    errs = holding_conflicts(txn, vm, operation)
    if errs:
        raise errs[0]


def vdi_held(txn, vdi_uuid: str) -> bool:
    return bool(holders(txn, vdi_uuid))


def vdi_held_rw(txn, vdi_uuid: str) -> bool:
    return any(m == "RW" for _, m in holders(txn, vdi_uuid))


# --- chains --------------------------------------------------------------------------------------------
def ancestors(txn, vdi: dict) -> list[dict]:
    """The base copies above a VDI, nearest first (bounded: chains are acyclic, I11)."""
    out, seen, cur = [], {vdi["uuid"]}, vdi
    while cur["parent"] and len(out) <= MAX_ANCESTORS + 1:
        p = txn.get("vdi", cur["parent"])
        if p is None or p["uuid"] in seen:
            break
        seen.add(p["uuid"])
        out.append(p)
        cur = p
    return out


def chain_bytes(txn, vdi: dict) -> int:
    """Bytes written along the chain (the VDI and its base copies), capped at virtual-size: what
    a full thin copy of it uses."""
    total = vdi["physical-utilisation"] + sum(a["physical-utilisation"] for a in ancestors(txn, vdi))
    return min(vdi["virtual-size"], total)


def copy_usage(vdi: dict, provisioning: str, txn) -> int:
    """Bytes a full copy uses (and so copies): thick its virtual-size, thin the written bytes."""
    if is_thick(provisioning):
        return vdi["virtual-size"]
    return chain_bytes(txn, vdi)


def check_chain_depth(txn, vdi: dict, times: int = 1) -> None:
    """A clone or snapshot puts a new base copy above the VDI (`times` of them when one command
    clones it several times): at most 30 ancestors."""
    if len(ancestors(txn, vdi)) + times > MAX_ANCESTORS:
        raise VmctlError(
            "SR_BACKEND_FAILURE_109",
            "The VDI chain would be deeper than 30",
            [("reason", "VDI chain deeper than 30")],
        )


def clone_need(vdi: dict, snapshot: bool) -> int:
    """Bytes a clone (or snapshot) of the VDI consumes: the source, if a thick writable leaf,
    reserves its size again (its old blocks go to the base copy), and so does a thick
    writable clone (model.md §3.5)."""
    need = leaf_usage(vdi)
    if not snapshot and is_thick(vdi["provisioning"]):
        need += vdi["virtual-size"]
    return need


def check_managed(txn, vdi: dict) -> None:
    if not vdi["managed"]:
        raise VmctlError(
            "VDI_NOT_MANAGED", "Base copies cannot be used directly", [("vdi", txn.ref("vdi", vdi))]
        )


def clone_vdi(
    txn,
    vdi: dict,
    snapshot: bool = False,
    name_label: str | None = None,
    name_description: str | None = None,
    now: str | None = None,
) -> str:
    """Copy-on-write clone or snapshot, without checks (callers check depth and space first).

    A new read-only base copy B takes the source's parent and physical-utilisation; the source
    keeps its uuid and flags with parent B; the new VDI is B's second child. Returns its uuid.
    On a real pool B takes the source's volume and both children get overlays on it (vmctl/volumes.py)."""
    source_location = vdi["location"]
    base = txn.insert(
        "vdi",
        {
            "name-label": "base copy",
            "sr": vdi["sr"],
            "pool": vdi["pool"],
            "virtual-size": vdi["virtual-size"],
            "physical-utilisation": vdi["physical-utilisation"],
            "provisioning": vdi["provisioning"],
            "type": vdi["type"],
            "read-only": True,
            "managed": False,
            "parent": vdi["parent"],
        },
    )
    txn.update("vdi", vdi["uuid"], {"parent": base, "physical-utilisation": leaf_usage(vdi)})
    values = {
        "name-label": vdi["name-label"] if name_label is None else name_label,
        "name-description": vdi["name-description"] if name_description is None else name_description,
        "sr": vdi["sr"],
        "pool": vdi["pool"],
        "virtual-size": vdi["virtual-size"],
        "provisioning": vdi["provisioning"],
        "type": vdi["type"],
        "parent": base,
        "tags": list(vdi["tags"]),
        "other-config": dict(vdi["other-config"]),
    }
    if snapshot:
        from vmctl.store.txn import now_iso

        values.update(
            {
                "read-only": True,
                "is-a-snapshot": True,
                "snapshot-of": vdi["uuid"],
                "snapshot-time": now or now_iso(),
                "sharable": False,
                "physical-utilisation": 0,
            }
        )
    else:
        # A clone of a snapshot or of a read-only disk is an ordinary writable disk (as xe).
        values["read-only"] = vdi["read-only"] and vdi["type"] == "iso"
        values["sharable"] = vdi["sharable"]
        values["physical-utilisation"] = 0
    u = txn.insert("vdi", values)
    new = txn.get("vdi", u)
    txn.update("vdi", u, {"physical-utilisation": leaf_usage(new)})
    volumes.cloned(txn, vdi["uuid"], base, u, source_location)
    return u


def copy_vdi(
    txn,
    vdi: dict,
    sr: dict,
    provisioning: str | None = None,
    name_label: str | None = None,
    name_description: str | None = None,
    read_only: bool = False,
    quiet: bool = False,
    vms: tuple[str, ...] = (),
    by_host: bool = True,
) -> str:
    """A full copy (no parent) on `sr`, without checks; returns its uuid. On a real pool the
    host copies the data afterwards, `vms` (and both disks) held meanwhile, a progress line on
    the terminal unless `quiet` (vmctl/volumes.py); `by_host=False`: the record only, the data
    comes another way (a live migration copies it: vmctl/moves.py)."""
    prov = provisioning or vdi["provisioning"]
    usage = copy_usage(vdi, prov, txn)
    u = txn.insert(
        "vdi",
        {
            "name-label": vdi["name-label"] if name_label is None else name_label,
            "name-description": vdi["name-description"] if name_description is None else name_description,
            "sr": sr["uuid"],
            "pool": sr["pool"],
            "virtual-size": vdi["virtual-size"],
            "physical-utilisation": usage,
            "provisioning": prov,
            "type": vdi["type"],
            "read-only": read_only,
            "sharable": vdi["sharable"],
            "tags": list(vdi["tags"]),
            "other-config": dict(vdi["other-config"]),
        },
    )
    if by_host:
        volumes.copied(txn, vdi["uuid"], u, quiet, vms)
    return u


def copy_into(txn, src: dict, into: dict, usage: int, quiet: bool = False) -> None:
    """vdi-copy into an existing disk: it now uses `usage` bytes; on a real pool the host copies
    the data into a new file of that disk, and the old file goes once the copy is done."""
    txn.update("vdi", into["uuid"], {"physical-utilisation": usage})
    volumes.copied(txn, src["uuid"], into["uuid"], quiet, replaces=volumes.file_of(into))


def grow_vdi(txn, vdi: dict, changes: dict, holder: dict | None = None) -> None:
    """vdi-resize's effect: the new virtual-size (and a thick disk's usage); on a real pool the
    volume grows, live through its domain when `holder` runs it."""
    txn.update("vdi", vdi["uuid"], changes)
    volumes.resized(txn, vdi["uuid"], changes["virtual-size"], holder)


def merge_chain(txn, base_uuid: str) -> None:
    """The merge rule (model.md §3.5), from one base copy up: a base copy without children is
    deleted; one with a single child C is merged into it (C takes B's parent and
    physical-utilisation min(C.virtual-size, C + B)); repeat up the chain."""
    cur = base_uuid
    guard = 0
    while cur and guard <= MAX_ANCESTORS + 2:
        guard += 1
        b = txn.get("vdi", cur)
        if b is None or b["managed"]:
            return
        children = txn.select("vdi", parent=cur)
        up = b["parent"]
        if not children:
            txn.delete("vdi", cur)
        elif len(children) == 1:
            c = children[0]
            txn.update(
                "vdi",
                c["uuid"],
                {
                    "parent": up,
                    "physical-utilisation": min(
                        c["virtual-size"], c["physical-utilisation"] + b["physical-utilisation"]
                    ),
                },
            )
            txn.delete("vdi", cur)
        else:
            return
        cur = up


def destroy_vdi(txn, vdi: dict, operation: str = "destroy", check: bool = True) -> None:
    """vdi-destroy's effect: refuse a held VDI (`VDI_IN_USE`) or a base copy (`VDI_NOT_MANAGED`)
    when `check`; remove the VBDs of halted VMs on it, the VDI, then apply the merge rule.
    A VM whose suspend image it was loses the reference."""
    if check:
        if vdi_held(txn, vdi["uuid"]):
            raise in_use(txn, vdi, operation)
        check_managed(txn, vdi)
    for b in txn.select("vbd", vdi=vdi["uuid"]):
        txn.delete("vbd", b["uuid"])
    parent = vdi["parent"]
    volumes.destroyed(txn, vdi)
    txn.delete("vdi", vdi["uuid"])
    if parent:
        merge_chain(txn, parent)


def create_vdi(
    txn,
    sr: dict,
    virtual_size: int,
    name_label: str = "",
    provisioning: str | None = None,
    type: str = "user",
    sharable: bool = False,
    read_only: bool = False,
    name_description: str = "",
    other_config: dict | None = None,
    tags: list | None = None,
    quiet: bool = False,
    check_attached: bool = True,
) -> str:
    """vdi-create's checks and effect (model.md §3.5), also used by vm-disk-add and for suspend
    images: SR attached (`SR_HAS_NO_PBDS`), content type (`VDI_INCOMPATIBLE_TYPE`), size
    (`INVALID_VALUE`, `VDI_TOO_LARGE`), thick space (`SR_FULL`). Thin creation is never refused
    for overcommitment; it may warn. Returns the uuid."""
    if check_attached:
        require_attached(txn, sr)
    if (sr["content-type"] == "iso") != (type == "iso"):
        raise VmctlError(
            "VDI_INCOMPATIBLE_TYPE",
            "An ISO SR holds only iso VDIs, and only ISO SRs hold them",
            [("vdi", ""), ("type", type)],
        )
    if isinstance(virtual_size, tuple) or virtual_size <= 0:
        raise VmctlError(
            "INVALID_VALUE",
            "A VDI's virtual-size must be > 0",
            [
                ("name", "virtual-size"),
                (
                    "value",
                    virtual_size if not isinstance(virtual_size, tuple) else "+" + str(virtual_size[1]),
                ),
            ],
        )
    size = round_size(virtual_size)
    if size > largest_vdi(sr):
        raise VmctlError(
            "VDI_TOO_LARGE",
            "The VDI is larger than the SR type allows",
            [("vdi", ""), ("maximum", largest_vdi(sr))],
        )
    prov = provisioning or sr["default-provisioning"]
    usage = size if is_thick(prov) else 0
    check_space(txn, {sr["uuid"]: usage})
    before = allocations(txn, [sr["uuid"]])
    u = txn.insert(
        "vdi",
        {
            "name-label": name_label,
            "name-description": name_description,
            "sr": sr["uuid"],
            "pool": sr["pool"],
            "virtual-size": size,
            "physical-utilisation": usage,
            "provisioning": prov,
            "type": type,
            "sharable": sharable,
            "read-only": read_only,
            "other-config": dict(other_config or {}),
            "tags": list(tags or []),
        },
    )
    overprovision_warning(txn, before, quiet)
    volumes.created(txn, u)
    return u


# --- attachment (power-transition hooks, vmctl/hooks.py) ----------------------------------------------------------------------------
def attach_vbds(txn, vm: dict, host_uuid: str) -> None:
    """Entering running or paused attaches every VBD whose SR is visible from the host (an
    empty CD drive has no SR and always attaches)."""
    for b in txn.select("vbd", vm=vm["uuid"]):
        ok = True
        if b["vdi"]:
            d = txn.get("vdi", b["vdi"])
            ok = d is not None and sr_visible(txn, d["sr"], host_uuid)
        if ok and not b["currently-attached"]:
            txn.update("vbd", b["uuid"], {"currently-attached": True})


def detach_vbds(txn, vm: dict, host_uuid: str) -> None:
    """Leaving for halted or suspended (or another host) detaches every VBD."""
    for b in txn.select("vbd", vm=vm["uuid"]):
        if b["currently-attached"]:
            txn.update("vbd", b["uuid"], {"currently-attached": False})


#: XAPI's VBD device numbers: an explicit one is any a Xen disk number can be (Device_number:
#: below 2^20, Xapi_vbd_helpers.valid_device); `autodetect` takes the lowest free of
#: allowed_VBD_devices, 0-254 (Xapi_vm_helpers, "high-watermark limits").
MAX_DEVICE = (1 << 20) - 1
AUTODETECT_MAX = 254


def free_device(txn, vm_uuid: str) -> int | None:
    used = {b["device"] for b in txn.select("vbd", vm=vm_uuid)}
    return next((d for d in range(AUTODETECT_MAX + 1) if d not in used), None)


def check_device(txn, vm: dict, text) -> int:
    """`device=` a number below 2^20 (`INVALID_DEVICE`) and free (`DEVICE_ALREADY_EXISTS`);
    `autodetect` or None: the lowest free device of 0-254."""
    if text is None or str(text) == "autodetect":
        d = free_device(txn, vm["uuid"])
        if d is None:
            raise VmctlError(
                "INVALID_DEVICE", "The VM has no free device (0-254)", [("device", "autodetect")]
            )
        return d
    s = str(text).strip()
    if not s.isascii() or not s.isdigit() or not 0 <= int(s) <= MAX_DEVICE:
        raise VmctlError(
            "INVALID_DEVICE",
            f"A device is an integer from 0 to {MAX_DEVICE}, or autodetect",
            [("device", text)],
        )
    d = int(s)
    if txn.select("vbd", vm=vm["uuid"], device=d):
        raise VmctlError(
            "DEVICE_ALREADY_EXISTS", "The VM already has a device with that number", [("device", d)]
        )
    return d


def plug(txn, vm: dict, vbd: dict, operation: str = "plug") -> None:
    """Attach one VBD of a running VM: SR visible from its host (`VM_REQUIRES_SR`), holding rule."""
    if vbd["vdi"]:
        vdi = txn.get("vdi", vbd["vdi"])
        if vdi is not None:
            if not sr_visible(txn, vdi["sr"], vm["resident-on"]):
                raise VmctlError(
                    "VM_REQUIRES_SR",
                    "The VM's host cannot see the SR",
                    [("vm", txn.ref("vm", vm)), ("sr", txn.ref("sr", vdi["sr"]))],
                )
            if vdi_conflict(txn, vdi["uuid"], vbd["mode"], vm["uuid"]):
                raise in_use(txn, vdi, operation)
    txn.update("vbd", vbd["uuid"], {"currently-attached": True})


def unplug(txn, vbd: dict) -> None:
    if not vbd["currently-attached"]:
        raise VmctlError(
            "DEVICE_ALREADY_DETACHED", "The VBD is not attached", [("device", txn.ref("vbd", vbd))]
        )
    if not vbd["unpluggable"]:
        raise VmctlError(
            "VBD_NOT_UNPLUGGABLE",
            "The VBD cannot be unplugged while the VM runs",
            [("vbd", txn.ref("vbd", vbd))],
        )
    txn.update("vbd", vbd["uuid"], {"currently-attached": False})


def grows_online(txn, sr: dict) -> bool:
    """Whether a disk of SR grows while a VM runs it. On a libvirt pool QEMU does it (the live
    block resize of drivers.md §3, every dir/netfs pool); a simulated pool follows XAPI, whose
    storage backends decide (ONLINE_GROW)."""
    from vmctl import drivers

    return drivers.real(txn, sr["pool"]) or sr["type"] in ONLINE_GROW
