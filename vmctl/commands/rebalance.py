"""Pool rebalancing (engine.md §5): pool-rebalance.

The plan is the engine's (:func:`vmctl.engine.rebalance.plan_rebalance`), computed on the pool's
snapshot inside the command's transaction: mandatory moves first (strict-rule breakers, overloaded
hosts), then the greedy loop (spread, balanced) or consolidation (pack), every move through
filters 1–11. Without a dry run the moves are applied in plan order in the same transaction
(:func:`vmctl.commands.migrate.relocate`, as vm-migrate applies one), so what is applied is
exactly the plan a dry run prints. On a libvirt pool each move is a real live migration committed
alone, wave by wave (vmctl/moves.py, as host-evacuate): what moved is printed, predicted and
measured figures side by side.
"""

from __future__ import annotations

from vmctl import moves
from vmctl.commands.migrate import shown_data
from vmctl.commands.table import Arg, Ctx, Data, Records, command
from vmctl.errors import VmctlError
from vmctl.pools import only_pool
from vmctl.relocation import record_of, relocate


def _max_moves(ctx: Ctx) -> int | None:
    """max-moves=N (N ≥ 0) or unlimited; default 50 (engine.md §5)."""
    from vmctl.engine.rebalance import DEFAULT_MAX_MOVES

    raw = ctx.a.get("max-moves")
    if raw is None:
        return DEFAULT_MAX_MOVES
    text = str(raw).strip().lower()
    if text == "unlimited":
        return None
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0 or not text.lstrip("+").isdigit():
        raise VmctlError(
            "INVALID_VALUE",
            "max-moves= takes a number ≥ 0 or unlimited",
            [("name", "max-moves"), ("value", raw)],
        )
    return n


@command(
    "pool-rebalance",
    "Even out host loads by live migrations, each worth more load balance than its bytes cost; the plan is printed "
    "with --dry-run or --explain and applied in order without --dry-run",
    family="pool",
    args=(
        Arg(
            "pool",
            "ref:pool",
            help="the pool (may be omitted when the inventory holds one pool)",
            complete="pool",
        ),
        Arg("threshold", "int", help="1 (mandatory moves only) to 5 (any qualifying move); default 3"),
        Arg(
            "policy",
            "enum",
            values=("spread", "balanced", "pack"),
            help="default the pool's rebalance-policy",
        ),
        Arg("max-moves", "string", help="at most N migrations, or unlimited (default 50)"),
    ),
    flags=("--explain",),
)
def pool_rebalance(ctx: Ctx):
    from vmctl.engine.rebalance import DEFAULT_THRESHOLD, MOVE_FIELDS, plan_rebalance
    from vmctl.engine_adapter import pool_state

    txn = ctx.txn
    threshold = ctx.a.get("threshold", DEFAULT_THRESHOLD)
    if not 1 <= threshold <= 5:
        raise VmctlError(
            "INVALID_VALUE", "threshold= is 1 to 5", [("name", "threshold"), ("value", threshold)]
        )
    max_moves = _max_moves(ctx)
    pool = only_pool(txn, ctx.a.get("pool"))
    ps = pool_state(txn, pool["uuid"])
    plan = plan_rebalance(ps, threshold=threshold, policy=ctx.a.get("policy"), max_moves=max_moves)
    quiet = bool(ctx.opts.get("quiet"))
    dry_run = bool(ctx.opts.get("dry_run"))
    real = moves.real_run(txn, pool["uuid"], dry_run)
    planned = []
    for i, m in enumerate(plan.moves, 1):  # plan order: each planned on the state the earlier ones leave
        vm = txn.get("vm", m.vm)
        if vm["resident-on"] != m.src:
            # the plan was computed on this transaction's snapshot; a mismatch is a bug, never drift
            raise VmctlError("INTERNAL_ERROR", params=[("invariant", f"rebalance move {m.step} source")])
        record = {
            **record_of(m.src, m.dst, {"bytes": m.bytes, "total-time": m.time}),
            "step": m.step,
            "rebalance": plan.policy,
        }
        if not real:
            relocate(txn, m.vm, m.dst, None, record, quiet)
            continue
        label = moves.label(txn, m.vm, m.src, m.dst, i, len(plan.moves))
        # the engine's prediction for the move in its wave: what libvirt's stream is held to
        pred = plan.schedule.moves[i - 1].prediction.as_dict() if plan.schedule else {}
        pred.pop("hints", None)
        record.update({k: v for k, v in record_of(m.src, m.dst, pred).items() if k not in record})
        planned.append(moves.Move(m.vm, m.src, m.dst, pred, record, label, wave=m.wave, order=i))
    if real and planned:
        # a real pool: each move a live migration committed alone, wave by wave (vmctl/moves.py)
        shown = moves.Shown()
        moves.carry_out_plan(txn, planned, dry_run, quiet, shown)
        return shown_data(shown, single=False)
    if ctx.opts.get("dry_run") or ctx.opts.get("explain"):
        names = {h.uuid: h.name or h.uuid for h in ps.hosts.values()}
        names.update({v.uuid: v.name or v.uuid for v in ps.vms.values()})
        return Data(
            plan.as_json(),
            "rebalance-plan",
            (plan, names),
            records=Records("rebalance", plan.rows(), list(MOVE_FIELDS), minimal="vm"),
        )
    return None
