"""`vmctl db-check [--fix]`: reports the inventory invariants of model.md §4 (the rules are in
vmctl/invariants.py), one line per violation (`<ID> <class> <uuid>: <text>`), exit 1 if any.
`--fix` repairs I5, I11, I12 and I13 in one journaled transaction."""

from __future__ import annotations

from vmctl.commands.table import Ctx, Text, command
from vmctl.errors import VmctlError
from vmctl.invariants import check
from vmctl.model import CLASSES


def fix(txn, problems) -> None:
    """Repair I5 (dangling refs), I11 (lone base copies), I12 (stale attachment), I13 (bridges, ports)."""
    from vmctl import xenet

    for inv, cls, uuid, _text in problems:
        if inv == "I5":
            r = txn.get(cls, uuid)
            if r is None:
                continue
            c = CLASSES[cls]
            if cls in ("vbd", "pbd", "vif", "pif") and any(
                f.is_ref
                and r[f.name]
                and f.name in ("vm", "vdi", "sr", "host", "network")
                and txn.get(f.ref_class, r[f.name]) is None
                for f in c.stored_fields
                if not (cls == "vbd" and f.name == "vdi" and r["type"] == "cd")
            ):
                txn.delete(cls, uuid)
                continue
            txn.update(
                cls,
                uuid,
                {
                    f.name: ""
                    for f in c.stored_fields
                    if f.is_ref
                    and r[f.name]
                    and f.name != "snapshot-of"
                    and txn.get(f.ref_class, r[f.name]) is None
                },
            )
        elif inv == "I12":
            if txn.get("vbd", uuid):
                txn.update("vbd", uuid, {"currently-attached": False})
        elif inv == "I13":
            # a name taken otherwise on the host (DEVICE_ALREADY_EXISTS, BRIDGE_NAME_EXISTS) stays
            # reported rather than guessed at
            try:
                if cls == "network":
                    n = txn.get("network", uuid)
                    for h in xenet.pool_hosts(txn, n["pool"]):
                        try:
                            xenet.ensure_network_bridge(txn, n, h)
                        except VmctlError:
                            pass
                elif cls == "pif":
                    xenet.add_pif_ports(txn, txn.get("pif", uuid))
                elif cls == "bond":
                    xenet.add_bond_port(txn, txn.get("bond", uuid))
                elif cls == "tunnel":
                    xenet.add_tunnel_ports(txn, txn.get("tunnel", uuid))
                elif cls == "vif":
                    xenet.plug_vif_port(txn, txn.get("vif", uuid))
            except VmctlError:
                pass
        elif inv == "I11":
            # only lone base copies are repaired (the merge rule); cycles and depth stay reported
            from vmctl import storage

            d = txn.get("vdi", uuid)
            if d is not None and not d["managed"]:
                storage.merge_chain(txn, uuid)


@command(
    "db-check",
    "Verify the inventory invariants I1-I16 (residence, capacity, references, storage chains, switches, "
    "the journal's hash chain); --fix repairs what can be derived again (I5, I11, I12, I13)",
    family="inventory",
    flags=("--fix",),
    writes_with="--fix",
)
def db_check(ctx: Ctx):
    txn = ctx.txn
    problems = check(txn)
    if problems and ctx.flag("fix"):
        fix(txn, problems)
        txn.flush()
        problems = check(txn)
    lines = "".join(f"{i} {c} {u}: {t}\n" for i, c, u, t in problems)
    return Text(lines, exit_code=1 if problems else 0)
