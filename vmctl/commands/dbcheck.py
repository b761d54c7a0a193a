"""`vmctl db-check [--fix]`: reports the inventory invariants of model.md §4 (the rules are in
vmctl/invariants.py), one line per violation (`<ID> <class> <uuid>: <text>`), exit 1 if any,
else the one line `db-check: all 16 invariants hold`. `--fix` repairs I5, I11, I12 and I13 in one journaled
transaction and first prints one line per repair (`fixed <ID> <class> <uuid>: <what it did>`)."""

from __future__ import annotations

from vmctl.commands.table import Ctx, Text, command
from vmctl.errors import VmctlError
from vmctl.invariants import INVARIANTS, check
from vmctl.model import CLASSES


def _where(txn, host_uuid: str) -> str:
    h = txn.get("host", host_uuid)
    return f"host {h['name-label']} ({host_uuid})" if h and h["name-label"] else f"host {host_uuid}"


def _fix_i13(txn, cls: str, uuid: str) -> list[str]:
    """Re-create what the xe layer expects on the switches; the repairs made, as text."""
    from vmctl import xenet

    done: list[str] = []
    if cls == "network":
        n = txn.get("network", uuid)
        if n is None:
            return done
        for h in xenet.pool_hosts(txn, n["pool"]):
            had = txn.switch(h).has_bridge(n["bridge"])
            try:
                xenet.ensure_network_bridge(txn, n, h)
            except VmctlError:
                continue
            if not had and txn.switch(h).has_bridge(n["bridge"]):
                done.append(f"created bridge {n['bridge']} on {_where(txn, h)}")
    elif cls == "pif":
        pif = txn.get("pif", uuid)
        if pif is not None:
            xenet.add_pif_ports(txn, pif)
            if xenet.pif_attached(txn, pif):
                net = txn.get("network", pif["network"])
                what = f"port {pif['device']}" if pif["physical"] else f"VLAN bridge {net['bridge']}"
                done.append(f"added {what} on {_where(txn, pif['host'])}")
    elif cls == "bond":
        b = txn.get("bond", uuid)
        if b is not None:
            xenet.add_bond_port(txn, b)
            m = txn.get("pif", b["master"])
            if m is not None and xenet.bond_port_ok(txn, b):
                done.append(f"made bond port {m['device']} on {_where(txn, m['host'])}")
    elif cls == "tunnel":
        t = txn.get("tunnel", uuid)
        if t is not None:
            xenet.add_tunnel_ports(txn, t)
            if xenet.tunnel_ports_ok(txn, t):
                done.append("made its ports to its peer hosts")
    elif cls == "vif":
        vif = txn.get("vif", uuid)
        if vif is not None and xenet.plug_vif_port(txn, vif):
            vm = txn.get("vm", vif["vm"])
            done.append(f"added port {xenet.vif_port_name(vm, vif)} on {_where(txn, vm['resident-on'])}")
    return done


def fix(txn, problems) -> list[str]:
    """Repair I5 (dangling refs), I11 (lone base copies), I12 (stale attachment), I13 (bridges,
    ports); return one line per repair made (`fixed <ID> <class> <uuid>: <what was done>`)."""
    done: list[str] = []

    def made(inv: str, cls: str, uuid: str, what: str) -> None:
        done.append(f"fixed {inv} {cls} {uuid}: {what}")

    for inv, cls, uuid, _text in problems:
        if inv == "I5":
            r = txn.get(cls, uuid)
            if r is None:
                continue
            c = CLASSES[cls]
            dangling = [
                f.name
                for f in c.stored_fields
                if f.is_ref
                and r[f.name]
                and f.name != "snapshot-of"
                and txn.get(f.ref_class, r[f.name]) is None
            ]
            if cls in ("vbd", "pbd", "vif", "pif") and any(
                f.is_ref
                and r[f.name]
                and f.name in ("vm", "vdi", "sr", "host", "network")
                and txn.get(f.ref_class, r[f.name]) is None
                for f in c.stored_fields
                if not (cls == "vbd" and f.name == "vdi" and r["type"] == "cd")
            ):
                txn.delete(cls, uuid)
                made(inv, cls, uuid, f"deleted it ({', '.join(dangling)} pointed at a missing object)")
                continue
            if dangling:
                txn.update(cls, uuid, dict.fromkeys(dangling, ""))
                made(inv, cls, uuid, "cleared " + ", ".join(dangling))
        elif inv == "I12":
            b = txn.get("vbd", uuid)
            if b is not None and b["currently-attached"]:
                txn.update("vbd", uuid, {"currently-attached": False})
                made(inv, cls, uuid, "marked it detached")
        elif inv == "I13":
            # a name taken otherwise on the host (DEVICE_ALREADY_EXISTS, BRIDGE_NAME_EXISTS) stays
            # reported rather than guessed at
            try:
                for what in _fix_i13(txn, cls, uuid):
                    made(inv, cls, uuid, what)
            except VmctlError:
                pass
        elif inv == "I11":
            # only lone base copies are repaired (the merge rule); cycles and depth stay reported
            from vmctl import storage

            d = txn.get("vdi", uuid)
            if d is not None and not d["managed"]:
                storage.merge_chain(txn, uuid)
                made(inv, cls, uuid, "merged the lone base copy into its child")
    return done


@command(
    "db-check",
    "Verify the inventory invariants I1-I16 (residence, capacity, references, storage chains, switches, "
    "the journal's hash chain); prints one line when all hold; --fix repairs what can be derived again "
    "(I5, I11, I12, I13) and prints one line per repair",
    family="inventory",
    flags=("--fix",),
    writes_with="--fix",
)
def db_check(ctx: Ctx):
    txn = ctx.txn
    problems = check(txn)
    fixed: list[str] = []
    if problems and ctx.flag("fix"):
        fixed = fix(txn, problems)
        txn.flush()
        problems = check(txn)
    lines = [*fixed, *(f"{i} {c} {u}: {t}" for i, c, u, t in problems)]
    if not problems:
        lines.append(f"db-check: all {len(INVARIANTS)} invariants hold")
    return Text("".join(line + "\n" for line in lines), exit_code=1 if problems else 0)
