"""Host evacuation and maintenance mode (engine.md §4.4): host-evacuate and
host-get-vms-which-prevent-evacuation.

First each running or paused VM's own VM.pool_migrate checks (a paused VM cannot move, nor an
immobile or blocked one) and, with HA enabled, whether HA protects it
(``HOST_EVACUATE_VM_NOT_HA_PROTECTED``), as XAPI's evacuation does. The plan is then the engine's
(:func:`vmctl.engine.evacuate.plan_evacuation`): batch placement of the other VMs onto the other
hosts through filters 1–10, one HA admission check on the final state with the host removed from
the survivors, and the schedule in waves under the concurrency caps. A refusal moves nothing and
reports, as XAPI's Host.evacuate does, a blocking VM's own error (``VM_REQUIRES_SR``,
``HOST_NOT_ENOUGH_FREE_MEMORY``...), the message counting the others.
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


def _operation_blockers(ctx: Ctx, host: dict, ps):
    """The reasons XAPI's evacuation finds before placement (xapi_host.compute_evacuation_plan_no_wlb):
    each running or paused VM's own VM.pool_migrate checks (blocked-operations, power state: a
    paused VM cannot be live-migrated, template, mobility: VM_IS_IMMOBILE), and, with HA enabled,
    a VM HA does not protect (HOST_EVACUATE_VM_NOT_HA_PROTECTED: XAPI wants those shut down or
    suspended first, so the evacuated host looks to the HA planner like a failed one). None when
    no other host could take a VM at all: XAPI then answers NO_HOSTS_AVAILABLE for every VM
    before any of these checks, as the engine's plan does.
    Returns (blockers, the uuids of those VMs, which the plan then leaves out)."""
    from vmctl.engine.evacuate import Blocker, has_targets
    from vmctl.vms import check_vm_operation

    txn = ctx.txn
    if not has_targets(ps, host["uuid"]):
        return [], frozenset()
    ha = txn.get("pool", host["pool"])["ha-enabled"]
    out = []
    vms = [
        v for st in ("running", "paused") for v in txn.select("vm", resident_on=host["uuid"], power_state=st)
    ]
    for vm in sorted(vms, key=lambda v: (v["name-label"].encode(), v["uuid"])):
        try:
            check_vm_operation(txn, vm, "pool_migrate")
        except VmctlError as e:
            out.append(Blocker("vm", vm["uuid"], vm["name-label"], e.code, tuple(e.params)))
            continue
        if ha and vm["ha-restart-priority"] != "restart":
            params = (("vm", txn.ref("vm", vm)),)
            out.append(
                Blocker("vm", vm["uuid"], vm["name-label"], "HOST_EVACUATE_VM_NOT_HA_PROTECTED", params)
            )
    return out, frozenset(b.uuid for b in out)


def _first_error(host: dict, blockers: list):
    """XAPI's Host.evacuate fails with the error of a VM that cannot move (its own code and
    params); the message says how many others there are."""
    from vmctl.errors import MESSAGES

    vm_blockers = [b for b in blockers if b.cls == "vm"]
    b = (vm_blockers or blockers)[0]
    others = len(vm_blockers) - 1
    more = (
        f"; {others} other VM{'s' if others != 1 else ''} cannot move either "
        "(host-get-vms-which-prevent-evacuation lists them)"
        if others > 0
        else ""
    )
    what = f"VM {b.name or b.uuid}" if b.cls == "vm" else "the pool's HA plan"
    text = MESSAGES.get(b.code, b.code)
    return VmctlError(
        b.code,
        f"Host {host['name-label'] or host['uuid']} cannot be evacuated: {what}: {text}{more}",
        list(b.params),
    )


@command(
    "host-evacuate",
    "Live-migrate every running VM off a host, in waves under the concurrency caps; refused with a "
    "blocking VM's own error (nothing moves) when a VM cannot move",
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
    from vmctl.engine.evacuate import CANNOT_EVACUATE, MOVE_FIELDS, plan_evacuation, vms_preventing_evacuation

    txn = ctx.txn
    if ctx.a.get("batch-size", 1) < 1:
        raise VmctlError(
            "INVALID_VALUE",
            "batch-size is 1 or more",
            [("name", "batch-size"), ("value", ctx.raw["batch-size"])],
        )
    host, ps = _pool_and_host(ctx)
    opts = _options(ctx, host)
    early, skip = _operation_blockers(ctx, host, ps)
    if early:
        rest = vms_preventing_evacuation(ps, host["uuid"], policy=opts["policy"], sr=opts["sr"], skip=skip)
        raise _first_error(host, sorted(early + rest, key=lambda b: (b.cls != "vm", b.name, b.uuid)))
    try:
        plan = plan_evacuation(
            ps,
            host["uuid"],
            policy=opts["policy"],
            network=opts["network"],
            sr=opts["sr"],
            max_width=ctx.a.get("batch-size"),
        )
    except VmctlError as e:
        if e.code == CANNOT_EVACUATE:
            raise _first_error(host, e.blockers) from None  # type: ignore[attr-defined]
        raise
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
    early, skip = _operation_blockers(ctx, host, ps)
    blockers = vms_preventing_evacuation(ps, host["uuid"], policy=opts["policy"], sr=opts["sr"], skip=skip)
    blockers = sorted(early + blockers, key=lambda b: (b.cls != "vm", b.name, b.uuid))
    rows = [b.row() for b in blockers]
    return Data(
        rows,
        "evacuation-blockers",
        records=Records("evacuation-blocker", rows, ["uuid", "name-label", "reason"]),
    )
