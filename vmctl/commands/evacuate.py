"""Host evacuation and maintenance mode (engine.md §4.4): host-evacuate and
host-get-vms-which-prevent-evacuation.

The plan is the engine's (:func:`vmctl.engine.evacuate.plan_evacuation`): batch placement of the
host's running and paused VMs onto the other hosts through filters 1–10, one HA admission check
on the final state with the host removed from the survivors, and the schedule in waves under the
concurrency caps. A refusal (``CANNOT_EVACUATE_HOST``, one line per blocking VM) moves nothing.
Applying the plan moves every VM as vm-migrate does (:func:`vmctl.relocation.relocate`:
power-transition hooks, storage motion for ``sr=``, the prediction recorded for the journal), in wave
order. On a libvirt pool each move is a real live migration committed alone (vmctl/moves.py),
after the command's transaction committed: the moves of a wave at once, wave after wave; a
failure keeps the moves done, attempts none of those not started, and exits 1 naming the step,
the VM and the reason. What moved is printed, predicted and measured figures side by side.

Maintenance mode is the chain ``host-disable host=H -- host-evacuate host=H``: one transaction, so
the host stays enabled when the evacuation is refused; ``host-enable host=H`` ends it.
"""

from __future__ import annotations

from vmctl import moves
from vmctl.commands.migrate import shown_data
from vmctl.commands.table import Arg, Ctx, Data, Records, command
from vmctl.errors import VmctlError
from vmctl.model import POLICIES, POLICY_HELP
from vmctl.pools import same_pool
from vmctl.relocation import record_of, relocate, storage_need

_HOST = Arg("host", "ref:host", True, "the host to empty: uuid or name-label", complete="host")


def _pool_and_host(ctx: Ctx):
    from vmctl.engine_adapter import pool_state

    txn = ctx.txn
    host = txn.resolve_one("host", ctx.a["host"])
    return host, pool_state(txn, host["pool"])


def _options(ctx: Ctx, host: dict) -> dict:
    """policy=, network=, sr= resolved to what the engine takes."""
    txn = ctx.txn
    network = txn.resolve_one("network", ctx.a["network"]) if "network" in ctx.a else None
    sr = txn.resolve_one("sr", ctx.a["sr"]) if "sr" in ctx.a else None
    for cls, row in (("network", network), ("sr", sr)):
        if row is not None:
            same_pool(txn, cls, row, host["pool"])
    return {
        "policy": ctx.a.get("policy"),
        "network": network["uuid"] if network else None,
        "sr": sr["uuid"] if sr else None,
    }


@command(
    "host-evacuate",
    "Live-migrate every running or paused VM off a host, in waves under the "
    "concurrency caps; refused with CANNOT_EVACUATE_HOST (nothing moves) when a VM has no target",
    family="host",
    args=(
        _HOST,
        Arg(
            "policy",
            "enum",
            values=POLICIES,
            help=f"placement policy for the plan (default the pool's placement-policy): {POLICY_HELP}",
        ),
        Arg(
            "network",
            "ref:network",
            help="the migration network (default the pool's migration-network, else the management network)",
            complete="network",
        ),
        Arg(
            "sr",
            "ref:sr",
            help="a shared SR: VMs with disks only this host reaches move them there (storage motion)",
            complete="sr",
        ),
        Arg("batch-size", "int", help="at most this many migrations at once (a wave), as xe's batch-size"),
    ),
    flags=("--explain",),
)
def host_evacuate(ctx: Ctx):
    from vmctl.engine.evacuate import MOVE_FIELDS, plan_evacuation

    txn = ctx.txn
    if ctx.a.get("batch-size", 1) < 1:
        raise VmctlError(
            "INVALID_VALUE",
            "batch-size is 1 or more",
            [("name", "batch-size"), ("value", ctx.raw["batch-size"])],
        )
    host, ps = _pool_and_host(ctx)
    opts = _options(ctx, host)
    plan = plan_evacuation(
        ps,
        host["uuid"],
        policy=opts["policy"],
        network=opts["network"],
        sr=opts["sr"],
        max_width=ctx.a.get("batch-size"),
    )
    # SR accounting for storage motion: every copy is checked before anything moves (SR_FULL)
    from vmctl import storage

    storage.check_space(txn, storage_need(txn, plan.storage_map))
    quiet = bool(ctx.opts.get("quiet"))
    from vmctl.units import humanise_duration

    for m in plan.moves:
        # engine.md §4.4 plans every VM that has a target; one predicted not to converge is not a
        # refusal (vm-migrate --force would move it too), but the operator should know
        if not m.converges:
            ctx.warn(
                f"VM {m.name or m.vm} is predicted not to converge: downtime "
                f"{humanise_duration(m.downtime)} ({m.prediction.stop_reason})"
            )
    dry_run = bool(ctx.opts.get("dry_run"))
    real = moves.real_run(txn, host["pool"], dry_run)
    planned = []
    for i, m in enumerate(plan.moves, 1):  # wave order
        pred = m.prediction.as_dict()
        pred.pop("hints", None)
        record = {**record_of(m.src, m.dst, pred), "wave": m.wave}
        vmap = {d: s for d, s in plan.storage_map.items() if d in {v.uuid for v in ps.vms[m.vm].vdis}}
        if not real:
            relocate(txn, m.vm, m.dst, vmap, record, quiet)
            continue
        label = moves.label(txn, m.vm, m.src, m.dst, i, len(plan.moves))
        planned.append(moves.Move(m.vm, m.src, m.dst, pred, record, label, opts["network"], vmap, m.wave, i))
    if real and planned:
        # a real pool: each move a live migration committed alone, wave by wave (vmctl/moves.py)
        shown = moves.Shown()
        moves.carry_out_plan(txn, planned, dry_run, quiet, shown)
        return shown_data(shown, single=False)
    if ctx.opts.get("dry_run") or ctx.opts.get("explain"):
        # csv/tsv: the move rows in plain values (cli.md §3)
        return Data(
            plan.as_json(),
            "evacuation-plan",
            plan,
            records=Records("evacuation", plan.rows(), list(MOVE_FIELDS), minimal="vm"),
        )
    return None


@command(
    "host-get-vms-which-prevent-evacuation",
    "List the VMs that keep a host from being evacuated, "
    "with the reason (CODE,param,...); nothing when it can be evacuated",
    family="host",
    rw=False,
    args=(
        _HOST,
        Arg(
            "policy",
            "enum",
            values=POLICIES,
            help=f"placement policy to plan with (default the pool's placement-policy): {POLICY_HELP}",
        ),
        Arg(
            "sr",
            "ref:sr",
            help="as host-evacuate sr=: a shared SR for disks only this host reaches",
            complete="sr",
        ),
    ),
)
def host_get_vms_which_prevent_evacuation(ctx: Ctx):
    from vmctl.engine.evacuate import vms_preventing_evacuation

    host, ps = _pool_and_host(ctx)
    opts = _options(ctx, host)
    blockers = vms_preventing_evacuation(ps, host["uuid"], policy=opts["policy"], sr=opts["sr"])
    rows = [b.row() for b in blockers]
    return Data(
        rows,
        "evacuation-blockers",
        records=Records("evacuation-blocker", rows, ["uuid", "name-label", "reason"]),
    )
