"""Virtual disks (model.md §1.6, §3.5, §3.9): vdi-create, vdi-resize, vdi-copy, vdi-clone,
vdi-snapshot, vdi-destroy and the vdi-param-set rules (sharable; physical-utilisation of thin
disks records guest writes). vdi-list (base copies hidden without --all) is generic.

Copies report the bytes they copy with --explain: a full copy moves the virtual-size of a
thick target, or the bytes written along the source's chain for a thin one."""

from __future__ import annotations

from vmctl import storage
from vmctl.commands.table import Arg, Ctx, Data, Value, command
from vmctl.errors import VmctlError
from vmctl.fields import extra_fields, param_hook, param_setter
from vmctl.model import PROVISIONING


def _vdi(ctx: Ctx, key: str = "uuid") -> dict:
    return ctx.txn.resolve_one("vdi", ctx.a[key])


def _invalid(name: str, value) -> VmctlError:
    return VmctlError("INVALID_VALUE", params=[("name", name), ("value", value)])


def _quiet(ctx: Ctx) -> bool:
    return bool(ctx.opts.get("quiet"))


def _size_arg(ctx: Ctx, name: str) -> int:
    v = ctx.a[name]
    if isinstance(v, tuple) or v <= 0:
        raise _invalid(name, ctx.raw.get(name))
    return v


@command(
    "vdi-create",
    "Create a virtual disk on an SR; print its uuid",
    family="vdi",
    args=(
        Arg("sr-uuid", "uuid", True, "the SR", complete="sr"),
        Arg("name-label", required=True, help="the disk's name"),
        Arg("virtual-size", "size", True, "the size the guest sees, rounded up to a multiple of 2 MiB"),
        Arg(
            "type",
            "enum",
            values=("user", "system", "suspend", "iso"),
            help="user (default), system, suspend, iso",
        ),
        Arg("sharable", "bool", help="may be held read-write by several VMs (default false)"),
        Arg("read-only", "bool", help="read-only disk (default false)"),
        Arg(
            "provisioning",
            "enum",
            values=PROVISIONING,
            help="thin (written bytes only), thick-lazy or thick-eager (reserve the whole size); "
            "default the SR's default-provisioning",
        ),
        Arg("name-description", help="a description"),
    ),
    fields_of="vdi",
    flags=("--may-exist",),
    creates="vdi",
)
def vdi_create(ctx: Ctx):
    txn, a = ctx.txn, ctx.a
    extra = extra_fields(ctx, "vdi", {x.name for x in ctx.cmd.args})  # tags, other-config (model.md §0)
    sr = txn.resolve_one("sr", a["sr-uuid"])
    if ctx.flag("may-exist"):
        for d in sorted(
            txn.select("vdi", sr=sr["uuid"], name_label=a["name-label"]), key=lambda r: r["uuid"]
        ):
            return Value(d["uuid"])
    size = a["virtual-size"]
    if isinstance(size, tuple):
        raise _invalid("virtual-size", ctx.raw["virtual-size"])
    uuid = storage.create_vdi(
        txn,
        sr,
        size,
        name_label=a["name-label"],
        provisioning=a.get("provisioning"),
        type=a.get("type", "user"),
        sharable=a.get("sharable", False),
        read_only=a.get("read-only", False),
        name_description=a.get("name-description", ""),
        quiet=_quiet(ctx),
    )
    if extra:
        txn.update("vdi", uuid, extra)
    return Value(uuid)


@command(
    "vdi-resize",
    "Grow a virtual disk (disk-size=+N grows by N); shrinking is refused",
    family="vdi",
    args=(
        Arg("uuid", "uuid", True, "the VDI"),
        Arg("disk-size", "size", True, "the new size, or +N to grow by N (rounded up to 2 MiB)"),
        Arg(
            "online",
            "bool",
            help="grow while a running or paused VM holds it: on a libvirt pool QEMU grows it "
            "live; on a simulated pool refused, as XAPI's storage backends do not resize online",
        ),
    ),
)
def vdi_resize(ctx: Ctx):
    txn = ctx.txn
    vdi = _vdi(ctx)
    sr = txn.get("sr", vdi["sr"])
    storage.check_managed(txn, vdi)
    if vdi["read-only"]:
        raise VmctlError("VDI_READONLY", "The VDI is read-only", [("vdi", txn.ref("vdi", vdi))])
    storage.require_attached(txn, sr)
    req = ctx.a["disk-size"]
    want = vdi["virtual-size"] + req[1] if isinstance(req, tuple) else req
    new = storage.round_size(want)
    if new < vdi["virtual-size"]:
        raise VmctlError(
            "SR_BACKEND_FAILURE_79",
            "VDI shrinking is not supported",
            [("reason", "VDI shrinking is not supported")],
        )
    if new == vdi["virtual-size"]:
        return None
    if new > storage.largest_vdi(sr):
        raise VmctlError(
            "VDI_TOO_LARGE",
            "The VDI would be larger than the SR type allows",
            [("vdi", txn.ref("vdi", vdi)), ("maximum", storage.largest_vdi(sr))],
        )
    online = ctx.a.get("online", False)
    if online and not storage.grows_online(txn, sr):
        # VDI.resize_online: the backend's capability decides, attached or not
        raise VmctlError(
            "SR_OPERATION_NOT_SUPPORTED",
            f"An SR of type {sr['type']} cannot grow a disk online: shut the VM down, then resize",
            [("sr", txn.ref("sr", sr))],
        )
    hs = storage.holders(txn, vdi["uuid"])
    if any(vm["power-state"] == "suspended" for vm, _ in hs) or (hs and not online):
        raise storage.in_use(txn, vdi, "resize")
    changes = {"virtual-size": new}
    if storage.is_thick(vdi["provisioning"]):
        storage.check_space(txn, {sr["uuid"]: new - vdi["virtual-size"]})
        changes["physical-utilisation"] = new
    before = storage.allocations(txn, [sr["uuid"]])
    storage.grow_vdi(txn, vdi, changes, hs[0][0] if hs else None)
    storage.overprovision_warning(txn, before, _quiet(ctx))
    return None


def _explain(ctx: Ctx, uuid: str, copies: list[dict]) -> Value | Data:
    """--explain: the new uuid plus the bytes each copy moves (thin: only written bytes)."""
    if not ctx.opts.get("explain"):
        return Value(uuid)
    total = sum(c["bytes"] for c in copies)
    return Data({"uuid": uuid, "bytes-to-copy": total, "copies": copies}, "vdi-copy-report")


@command(
    "vdi-copy",
    "Full copy of a disk to an SR (new disk) or into an existing disk; print the target's uuid "
    "(--explain: also the bytes copied: thick the size, thin the bytes written along the chain)",
    family="vdi",
    args=(
        Arg("uuid", "uuid", True, "the source VDI"),
        Arg("sr-uuid", "uuid", help="copy to a new VDI on this SR", complete="sr"),
        Arg("into-vdi-uuid", "uuid", help="overwrite this existing, writable, large enough VDI"),
        Arg("provisioning", "enum", values=PROVISIONING, help="of the new copy (default the source's)"),
    ),
    flags=("--explain",),
)
def vdi_copy(ctx: Ctx):
    txn, a = ctx.txn, ctx.a
    if "sr-uuid" not in a and "into-vdi-uuid" not in a:
        raise VmctlError(
            "MISSING_PARAMETER", "Name the target: sr-uuid= or into-vdi-uuid=", [("name", "sr-uuid")]
        )
    if "sr-uuid" in a and "into-vdi-uuid" in a:
        raise _invalid("into-vdi-uuid", a["into-vdi-uuid"])
    src = _vdi(ctx)
    target_sr = txn.resolve_one("sr", a["sr-uuid"]) if "sr-uuid" in a else None
    into = txn.resolve_one("vdi", a["into-vdi-uuid"]) if "into-vdi-uuid" in a else None
    storage.check_managed(txn, src)
    if storage.vdi_held_rw(txn, src["uuid"]):
        raise storage.in_use(txn, src, "copy")
    if into is not None:
        if into["uuid"] == src["uuid"]:
            raise _invalid("into-vdi-uuid", a["into-vdi-uuid"])
        if into["pool"] != src["pool"]:
            raise VmctlError(
                "NOT_IN_SAME_POOL",
                params=[("object", txn.ref("vdi", into)), ("pool", txn.ref("pool", src["pool"]))],
            )
        storage.check_managed(txn, into)
        if into["read-only"]:
            raise VmctlError("VDI_READONLY", "The target VDI is read-only", [("vdi", txn.ref("vdi", into))])
        if into["virtual-size"] < src["virtual-size"]:
            raise VmctlError(
                "VDI_TOO_SMALL",
                "The target VDI is smaller than the source",
                [("vdi", txn.ref("vdi", into)), ("minimum", src["virtual-size"])],
            )
        if storage.vdi_held(txn, into["uuid"]):
            raise storage.in_use(txn, into, "copy")
        moved = storage.chain_bytes(txn, src)
        if storage.is_thick(into["provisioning"]):
            new_util = into["virtual-size"]
        else:
            # written blocks of the target stay allocated; the copy writes the source's bytes
            new_util = min(into["virtual-size"], max(into["physical-utilisation"], moved))
        storage.check_space(txn, {into["sr"]: new_util - into["physical-utilisation"]})
        storage.copy_into(txn, src, into, new_util, _quiet(ctx))
        return _explain(
            ctx,
            into["uuid"],
            [
                {
                    "source": src["uuid"],
                    "target": into["uuid"],
                    "bytes": moved,
                    "provisioning": into["provisioning"],
                }
            ],
        )
    if (target_sr["content-type"] == "iso") != (src["type"] == "iso"):
        raise VmctlError(
            "VDI_INCOMPATIBLE_TYPE",
            "An ISO SR holds only iso VDIs, and only ISO SRs hold them",
            [("vdi", txn.ref("vdi", src)), ("type", src["type"])],
        )
    if target_sr["pool"] != src["pool"]:
        raise VmctlError(
            "NOT_IN_SAME_POOL",
            params=[("object", txn.ref("sr", target_sr)), ("pool", txn.ref("pool", src["pool"]))],
        )
    storage.require_attached(txn, target_sr)
    if src["virtual-size"] > storage.largest_vdi(target_sr):
        raise VmctlError(
            "VDI_TOO_LARGE",
            params=[("vdi", txn.ref("vdi", src)), ("maximum", storage.largest_vdi(target_sr))],
        )
    prov = a.get("provisioning", src["provisioning"])
    usage = storage.copy_usage(src, prov, txn)
    storage.check_space(txn, {target_sr["uuid"]: usage})
    before = storage.allocations(txn, [target_sr["uuid"]])
    # an ISO image stays read-only; any other copy is a writable disk
    u = storage.copy_vdi(
        txn, src, target_sr, prov, read_only=src["type"] == "iso" and src["read-only"], quiet=_quiet(ctx)
    )
    storage.overprovision_warning(txn, before, _quiet(ctx))
    return _explain(
        ctx,
        u,
        [
            {
                "source": src["uuid"],
                "target": u,
                "bytes": storage.chain_bytes(txn, src) if not storage.is_thick(prov) else src["virtual-size"],
                "provisioning": prov,
            }
        ],
    )


def _chain_checks(ctx: Ctx, vdi: dict, snapshot: bool) -> None:
    txn = ctx.txn
    storage.check_managed(txn, vdi)
    storage.check_chain_depth(txn, vdi)
    storage.check_space(txn, {vdi["sr"]: storage.clone_need(vdi, snapshot)})


@command(
    "vdi-clone",
    "Copy-on-write clone of a disk on its SR; print the clone's uuid",
    family="vdi",
    args=(
        Arg("uuid", "uuid", True, "the source VDI"),
        Arg("new-name-label", help="the clone's name (default the source's)"),
        Arg("new-name-description", help="the clone's description (default the source's)"),
    ),
)
def vdi_clone(ctx: Ctx):
    txn = ctx.txn
    vdi = _vdi(ctx)
    _chain_checks(ctx, vdi, False)
    before = storage.allocations(txn, [vdi["sr"]])
    u = storage.clone_vdi(
        txn, vdi, name_label=ctx.a.get("new-name-label"), name_description=ctx.a.get("new-name-description")
    )
    storage.overprovision_warning(txn, before, _quiet(ctx))
    return Value(u)


@command(
    "vdi-snapshot",
    "Read-only copy-on-write snapshot of a disk; print the snapshot's uuid",
    family="vdi",
    args=(Arg("uuid", "uuid", True, "the source VDI"),),
)
def vdi_snapshot(ctx: Ctx):
    txn = ctx.txn
    vdi = _vdi(ctx)
    if vdi["sharable"]:
        raise VmctlError(
            "VDI_IS_SHARABLE", "A sharable VDI cannot be snapshotted", [("vdi", txn.ref("vdi", vdi))]
        )
    _chain_checks(ctx, vdi, True)
    before = storage.allocations(txn, [vdi["sr"]])
    u = storage.clone_vdi(txn, vdi, snapshot=True)
    storage.overprovision_warning(txn, before, _quiet(ctx))
    return Value(u)


@command(
    "vdi-destroy",
    "Destroy a disk (VBDs of halted VMs on it go too); chains then merge",
    family="vdi",
    args=(Arg("uuid", "uuid", True, "the VDI"),),
    flags=("--if-exists",),
)
def vdi_destroy(ctx: Ctx):
    txn = ctx.txn
    vdi = ctx.unless_missing(lambda: _vdi(ctx))
    if vdi is None:
        return None
    if txn.select("vm", suspend_vdi=vdi["uuid"]):
        # a suspend image belongs to its (suspended) VM: vm-resume or vm-shutdown --force drop it
        raise storage.in_use(txn, vdi, "destroy")
    storage.destroy_vdi(txn, vdi, "destroy")
    return None


# --- param-set rules -------------------------------------------------------------------------------------
@param_hook("vdi")
def _vdi_param_rules(ctx: Ctx, vdi: dict, changes: dict) -> None:
    if (
        "sharable" in changes
        and changes["sharable"] != vdi["sharable"]
        and storage.vdi_held(ctx.txn, vdi["uuid"])
    ):
        raise storage.in_use(ctx.txn, vdi, "param-set")


@param_setter(
    "vdi",
    "physical-utilisation",
    "physical-utilisation=N on a thin, managed, writable disk records guest writes "
    "(0 to virtual-size; growth needs free space on the SR)",
)
def _set_utilisation(ctx: Ctx, vdi: dict, text: str) -> None:
    """physical-utilisation on a thin, managed, writable VDI records guest writes (model.md §1.6)."""
    txn = ctx.txn
    if storage.is_thick(vdi["provisioning"]) or not vdi["managed"] or vdi["read-only"]:
        raise VmctlError(
            "FIELD_READ_ONLY",
            "physical-utilisation is settable only on thin, managed, writable VDIs",
            [("class", "vdi"), ("field", "physical-utilisation")],
        )
    from vmctl.units import parse_size

    try:
        v = parse_size(text, "physical-utilisation")
    except VmctlError:
        raise VmctlError(
            "FIELD_TYPE_ERROR",
            f"{text!r} is not a valid value for physical-utilisation",
            [("field", "physical-utilisation"), ("value", text)],
        ) from None
    if v > vdi["virtual-size"]:
        raise _invalid("physical-utilisation", text)
    storage.check_space(txn, {vdi["sr"]: v - vdi["physical-utilisation"]})
    txn.update("vdi", vdi["uuid"], {"physical-utilisation": v})
