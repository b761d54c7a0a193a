"""Storage repositories and PBDs (model.md §1.5, §3.5): sr-create, sr-destroy, sr-forget,
sr-scan, pbd-plug, pbd-unplug, and the param-set rules of sr, pool default-sr and vm suspend-sr.
sr-list and the derived sr fields come from the generic commands and vmctl/derived.py."""

from __future__ import annotations

from vmctl import storage, volumes
from vmctl.commands.table import Arg, Ctx, Value, command
from vmctl.errors import VmctlError
from vmctl.fields import field_named, param_hook, parse_value
from vmctl.model import PROVISIONING, SR_TYPES
from vmctl.pools import only_pool


def _invalid(name: str, value) -> VmctlError:
    return VmctlError("INVALID_VALUE", params=[("name", name), ("value", value)])


def _resolve_if_exists(ctx: Ctx, cls: str) -> dict | None:
    return ctx.unless_missing(lambda: ctx.txn.resolve_one(cls, ctx.a["uuid"]))


_SR_CREATE_ARGS = {
    "name-label",
    "type",
    "physical-size",
    "shared",
    "host",
    "content-type",
    "default-provisioning",
    "pool",
    "device-config",
}


@command(
    "sr-create",
    "Create a storage repository (shared, or local to host=) with its PBDs; print its uuid",
    family="sr",
    args=(
        Arg("name-label", required=True, help="the SR's name"),
        Arg(
            "type",
            "enum",
            True,
            "storage type: ext, lvm and file are local; nfs and iscsi may be shared",
            values=SR_TYPES,
        ),
        Arg("physical-size", "size", True, "capacity of the storage, > 0"),
        Arg(
            "shared",
            "bool",
            help="nfs, iscsi: true unless host= is given; file: false unless true is given in a "
            "libvirt pool (one cluster filesystem on every host); ext, lvm: always false",
        ),
        Arg("host", "ref:host", help="the host of a local SR (required unless shared)", complete="host"),
        Arg("content-type", "enum", values=("user", "iso"), help="user (VM disks, default) or iso"),
        Arg(
            "default-provisioning",
            "enum",
            values=PROVISIONING,
            help="provisioning of new VDIs (default thin for ext, file, nfs; thick-lazy for lvm, iscsi)",
        ),
        Arg("pool", "ref:pool", help="the pool (default: the host's, else the only pool)", complete="pool"),
        Arg("device-config", "map", help="device-config:KEY=VALUE, recorded on the PBDs, not interpreted"),
    ),
    fields_of="sr",
    flags=("--may-exist",),
    creates="sr",
)
def sr_create(ctx: Ctx):
    txn, a = ctx.txn, ctx.a
    size = a["physical-size"]
    if isinstance(size, tuple) or size <= 0:
        raise _invalid("physical-size", ctx.raw["physical-size"])
    sr_type = a["type"]
    host = txn.resolve_one("host", a["host"]) if a.get("host") else None
    if "pool" in a:
        pool = txn.resolve_one("pool", a["pool"])
    elif host is not None:
        pool = txn.get("pool", host["pool"])
    else:
        pool = only_pool(txn)
    if host is not None and host["pool"] != pool["uuid"]:
        raise VmctlError(
            "NOT_IN_SAME_POOL", params=[("object", txn.ref("host", host)), ("pool", txn.ref("pool", pool))]
        )
    if sr_type in storage.SHAREABLE_TYPES:
        shared = a.get("shared", host is None)
    elif sr_type == "file" and pool["driver"] == "libvirt":
        # a directory at one path of a cluster filesystem every host mounts (drivers.md §3)
        shared = a.get("shared", False)
    else:
        if a.get("shared") is True:
            raise _invalid("shared", "true")
        shared = False
    if shared and host is not None:
        # A shared SR has a PBD on every host; naming one host contradicts it.
        raise _invalid("host", ctx.raw["host"])
    if not shared and host is None:
        raise VmctlError("MISSING_PARAMETER", "A local SR needs host=", [("name", "host")])
    name = a["name-label"]
    if ctx.flag("may-exist"):
        for s in sorted(txn.select("sr", name_label=name, pool=pool["uuid"]), key=lambda r: r["uuid"]):
            return Value(s["uuid"])
    values: dict = {}
    for key, text in ctx.raw_pairs:  # other RW fields given as key=value (model.md §0)
        base, _, mkey = key.partition(":")
        if base in _SR_CREATE_ARGS:
            continue
        f = field_named("sr", base)  # vmctl's or xe's name (bind checked it is a field)
        if not f.writable:
            raise VmctlError("FIELD_READ_ONLY", params=[("class", "sr"), ("field", f.name)])
        if f.kind == "map":
            if not mkey:
                raise VmctlError("FIELD_TYPE_ERROR", params=[("field", f.name)])
            values.setdefault(f.name, {})[mkey] = text
        else:
            values[f.name] = parse_value(f, text, txn, pool["uuid"], arg=key, cls="sr")
    values.update(
        {
            "name-label": name,
            "type": sr_type,
            "physical-size": size,
            "shared": shared,
            "host": host["uuid"] if host else "",
            "pool": pool["uuid"],
            "content-type": a.get("content-type", "user"),
            "default-provisioning": a.get("default-provisioning", storage.DEFAULT_PROVISIONING[sr_type]),
        }
    )
    sr_uuid = txn.insert("sr", values)
    config = dict(ctx.maps.get("device-config", {}))
    volumes.check_sr(txn, txn.get("sr", sr_uuid), config)
    hosts = txn.select("host", pool=pool["uuid"]) if shared else [host]
    for h in sorted(hosts, key=lambda r: r["uuid"]):
        txn.insert(
            "pbd",
            {
                "host": h["uuid"],
                "sr": sr_uuid,
                "pool": pool["uuid"],
                "device-config": config,
                "currently-attached": True,
            },
        )
    volumes.attach_sr(txn, txn.get("sr", sr_uuid), [h["uuid"] for h in hosts])
    return Value(sr_uuid)


def _check_unplugged(txn, sr: dict) -> None:
    """SR.destroy and SR.forget need every PBD unplugged first (xapi_sr.assert_all_pbds_unplugged,
    Xapi_sr_operations: SR_HAS_PBD [sr]): pbd-unplug each one."""
    if any(p["currently-attached"] for p in txn.select("pbd", sr=sr["uuid"])):
        raise VmctlError(
            "SR_HAS_PBD",
            "The SR is still attached to a host: pbd-unplug its PBDs first",
            [("sr", txn.ref("sr", sr))],
        )


def _destroy_checks(ctx: Ctx, sr: dict) -> None:
    """sr-destroy, in Xapi_sr_operations.valid_operations' order: every PBD unplugged (SR_HAS_PBD),
    at least one PBD for the backend to act through (SR_HAS_NO_PBDS), no managed VDI left
    (SR_NOT_EMPTY [sr]): XAPI never destroys VDIs as a side effect of destroying an SR."""
    txn = ctx.txn
    _check_unplugged(txn, sr)
    if not txn.select("pbd", sr=sr["uuid"]):
        raise VmctlError("SR_HAS_NO_PBDS", params=[("sr", txn.ref("sr", sr))])
    if any(d["managed"] for d in storage.sr_vdis(txn, sr["uuid"])):
        raise VmctlError(
            "SR_NOT_EMPTY",
            "The SR still holds VDIs: destroy them (vdi-destroy) or forget the SR",
            [("sr", txn.ref("sr", sr))],
        )


def _forget_checks(ctx: Ctx, sr: dict) -> list[dict]:
    """sr-forget: every PBD unplugged (SR_HAS_PBD), as XAPI. vmctl adds the checks that keep the
    inventory free of dangling references, which XAPI leaves behind: a VDI a suspended VM holds
    (VDI_IN_USE), VBDs of halted VMs (SR_NOT_EMPTY unless --force, which drops them). Returns
    the VBDs to drop."""
    txn = ctx.txn
    _check_unplugged(txn, sr)
    operation = "sr-forget"
    vdis = sorted(storage.sr_vdis(txn, sr["uuid"]), key=lambda d: d["uuid"])
    uuids = {d["uuid"] for d in vdis}
    # one pass over the VBDs rather than one query per VDI (an SR may hold thousands)
    vbds = [b for b in txn.all("vbd") if b["vdi"] in uuids] if uuids else []
    held = set()
    for b in vbds:
        vm = txn.get("vm", b["vm"])
        if vm is not None and vm["power-state"] in storage.HOLDING_STATES:
            held.add(b["vdi"])
    for d in vdis:
        if d["uuid"] in held:
            raise storage.in_use(txn, d, operation)
    # A suspend image (of a suspended VM or a checkpoint) is in use too: dropping it would
    # leave a suspended VM without its memory (I10).
    for vm in txn.select("vm", power_state="suspended"):
        if vm["suspend-vdi"] in uuids:
            raise storage.in_use(txn, vm["suspend-vdi"], operation)
    dangling = sorted(vbds, key=lambda b: b["uuid"])
    if dangling and not ctx.force:
        raise VmctlError(
            "SR_NOT_EMPTY",
            "VMs still have disks on this SR (use --force to drop their VBDs)",
            [("sr", txn.ref("sr", sr))],
        )
    return dangling


def _remove_sr(txn, sr: dict, dangling: list[dict], data: bool) -> None:
    """The SR's records go; on a real pool its pools are detached from the hosts, and with
    `data` (sr-destroy) its volumes are deleted first, deepest in a chain first."""
    for b in dangling:
        txn.delete("vbd", b["uuid"])
    vdis = storage.sr_vdis(txn, sr["uuid"])
    if data:
        depth = {d["uuid"]: len(storage.ancestors(txn, d)) for d in vdis}
        for d in sorted(vdis, key=lambda r: (-depth[r["uuid"]], r["uuid"])):
            volumes.destroyed(txn, d)
    attached = [p["host"] for p in txn.select("pbd", sr=sr["uuid"]) if p["currently-attached"]]
    volumes.detach_sr(txn, sr, attached, last=data)
    for d in vdis:
        txn.delete("vdi", d["uuid"])
    for p in txn.select("pbd", sr=sr["uuid"]):
        txn.delete("pbd", p["uuid"])
    for pool in txn.select("pool", default_sr=sr["uuid"]):
        txn.update("pool", pool["uuid"], {"default-sr": ""})
    for vm in txn.select("vm", suspend_sr=sr["uuid"]):
        txn.update("vm", vm["uuid"], {"suspend-sr": ""})
    txn.delete("sr", sr["uuid"])


@command(
    "sr-destroy",
    "Destroy an empty SR whose PBDs are all unplugged, with its PBDs (asks for confirmation)",
    family="sr",
    args=(Arg("uuid", "uuid", True, "the SR", complete="sr"),),
    flags=("--force", "--if-exists"),
)
def sr_destroy(ctx: Ctx):
    sr = _resolve_if_exists(ctx, "sr")
    if sr is None:
        return None
    _destroy_checks(ctx, sr)
    ctx.confirm(
        [f"SR {sr['uuid']} ({sr['name-label']}) and its {len(ctx.txn.select('pbd', sr=sr['uuid']))} PBD(s)"]
    )
    _remove_sr(ctx.txn, sr, [], data=True)
    return None


@command(
    "sr-forget",
    "Forget the records of an SR whose PBDs are all unplugged: the SR, its PBDs and VDIs "
    "(the data counts as kept on the storage)",
    family="sr",
    args=(Arg("uuid", "uuid", True, "the SR", complete="sr"),),
    flags=("--force", "--if-exists"),
)
def sr_forget(ctx: Ctx):
    sr = _resolve_if_exists(ctx, "sr")
    if sr is None:
        return None
    dangling = _forget_checks(ctx, sr)
    _remove_sr(ctx.txn, sr, dangling, data=False)
    return None


@command(
    "sr-scan",
    "Apply the merge rule to every VDI chain of the SR (on a libvirt pool, also read each disk's "
    "physical-utilisation back from its volume)",
    family="sr",
    args=(Arg("uuid", "uuid", True, "the SR", complete="sr"),),
)
def sr_scan(ctx: Ctx):
    txn = ctx.txn
    sr = txn.resolve_one("sr", ctx.a["uuid"])
    for d in sorted(storage.sr_vdis(txn, sr["uuid"]), key=lambda r: r["uuid"]):
        if not d["managed"] and txn.get("vdi", d["uuid"]) is not None:
            storage.merge_chain(txn, d["uuid"])
    volumes.scanned(txn, sr)
    return None


@command(
    "pbd-plug",
    "Attach a PBD: its SR becomes visible from its host",
    family="pbd",
    args=(Arg("uuid", "uuid", True, "the PBD"),),
)
def pbd_plug(ctx: Ctx):
    txn = ctx.txn
    pbd = txn.resolve_one("pbd", ctx.a["uuid"])
    if not pbd["currently-attached"]:
        txn.update("pbd", pbd["uuid"], {"currently-attached": True})
        volumes.attach_sr(txn, txn.get("sr", pbd["sr"]), [pbd["host"]])
    return None


@command(
    "pbd-unplug",
    "Detach a PBD (refused while a VM resident on its host holds a VDI of the SR)",
    family="pbd",
    args=(Arg("uuid", "uuid", True, "the PBD"),),
)
def pbd_unplug(ctx: Ctx):
    txn = ctx.txn
    pbd = txn.resolve_one("pbd", ctx.a["uuid"])
    if not pbd["currently-attached"]:
        return None  # already detached: nothing to do (as xe)
    for d in sorted(storage.sr_vdis(txn, pbd["sr"]), key=lambda r: r["uuid"]):
        for vm, _mode in storage.holders(txn, d["uuid"]):
            if vm["power-state"] in storage.RESIDENT_STATES and vm["resident-on"] == pbd["host"]:
                raise storage.in_use(txn, d, "pbd-unplug")
    txn.update("pbd", pbd["uuid"], {"currently-attached": False})
    volumes.detach_sr(txn, txn.get("sr", pbd["sr"]), [pbd["host"]])
    return None


# --- param-set rules ---------------------------------------------------------------------------------
@param_hook("sr")
def _sr_param_rules(ctx: Ctx, sr: dict, changes: dict) -> None:
    if "physical-size" in changes:
        size = changes["physical-size"]
        if isinstance(size, tuple) or size <= 0 or size < storage.sr_utilisation(ctx.txn, sr["uuid"]):
            # may grow; may shrink only down to what is used (model.md §1.5)
            raise _invalid("physical-size", size if not isinstance(size, tuple) else f"+{size[1]}")


def _user_sr(ctx: Ctx, field: str, sr_uuid: str, pool_uuid: str) -> None:
    if not sr_uuid:
        return
    sr = ctx.txn.get("sr", sr_uuid)
    if sr is None:
        raise VmctlError("UUID_INVALID", params=[("class", "sr"), ("value", sr_uuid)])
    if sr["pool"] != pool_uuid:
        raise VmctlError(
            "NOT_IN_SAME_POOL",
            params=[("object", ctx.txn.ref("sr", sr)), ("pool", ctx.txn.ref("pool", pool_uuid))],
        )
    if sr["content-type"] != "user":
        raise _invalid(field, sr_uuid)


@param_hook("pool")
def _pool_default_sr(ctx: Ctx, pool: dict, changes: dict) -> None:
    """default-sr: an SR of this pool with content-type user (model.md §1.1)."""
    if "default-sr" in changes:
        _user_sr(ctx, "default-sr", changes["default-sr"], pool["uuid"])


@param_hook("vm")
def _vm_suspend_sr(ctx: Ctx, vm: dict, changes: dict) -> None:
    """suspend-sr holds suspend images: an SR of the VM's pool with content-type user."""
    if "suspend-sr" in changes:
        _user_sr(ctx, "suspend-sr", changes["suspend-sr"], vm["pool"])
