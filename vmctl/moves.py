"""How a decided live migration happens, shared by vm-migrate, host-evacuate and pool-rebalance:
on a simulated pool a change of records, on a libvirt pool a real migration that commits alone
(drivers.md §3–§4).

The commands decide every move as on a simulated pool (every check, the engine's prediction);
`carry_out` then makes one decided move happen:

* on a simulated pool, and in any dry run, the records move at once in the command's
  transaction (:func:`vmctl.relocation.relocate`);
* on a libvirt pool the move is one long action (vmctl/drivers). Its deciding transaction
  records the VM as migrating, `scheduled-to-be-resident-on` = the destination, so that the
  engine counts it on both hosts and against the migration caps meanwhile (engine.md §1), and
  holds it under a pending task (`current-operations` pool_migrate). The live migration runs
  with the lock released. The closing transaction records the move (relocate: the
  power-transition hooks, resident-on, domid) and `other-config:last-migration`: the engine's
  prediction with libvirt's measured figures next to it (`measured`). On a failure or Ctrl-C the
  framework puts the deciding records back: the VM runs on its source, as the driver made sure.

A finished migration cannot be undone, so each one commits alone:

* its action is `final`: it runs after every other action of its transaction, so nothing that
  can still fail comes after it;
* a transaction holds one migration. Every further VM of `vm-migrate --multiple` (and a second
  vm-migrate in a chain) is a step (vmctl/drivers): a transaction of its own, run once the move
  before it committed, that checks its move again on the inventory as it is then.

A plan (host-evacuate, pool-rebalance) runs wave by wave, as the engine cut it within the
concurrency caps (engine.md §4.3). The command's transaction decides the plan and commits (with
what comes before it in a chain: `host-disable -- host-evacuate`, whose refusal changes nothing);
then every move is a step, the steps of one wave a group (the runner): each decided in its own
transaction, one after another, re-checked against the inventory as it is then (the VM still
on the planned source, the destination still passing the placement filters and the caps), each
keeping the plan's prediction for it in its wave (the stream held to that rate); then the
wave's migrations run at once, each committed by its own closing as it ends, and the next wave
starts once the last one ended. A move refused while others of its
wave are decided waits for them and is checked once more (rebalancing may need the room an
earlier move frees). When a move fails, the moves already done stay committed and journalled
(each with its own decision and closing entries), the moves not started are not attempted, and
vmctl exits 1 naming the step, the VM and the reason. Ctrl-C stops the wave's running
migrations (each job aborted, each guest on its source) and keeps what ended before.

Storage motion (`vdi:<vdi>=<sr>`, `host-evacuate sr=`) on a real pool: the deciding transaction
makes the copies' records (new VDIs on their target SRs, both disks held); the action makes their
volumes on the destination, migrates with libvirt copying those disks into them while the memory
moves (the driver), reads what they hold, and deletes the old volumes the guest no longer reads;
the closing switches the VM's VBDs to the copies and destroys the old records. If the migration
fails or is interrupted, the new volumes are deleted and the records put back: the guest runs on
its source from its old disks.

What a command prints of the moves it made on a real pool (`Shown`) is filled in by their
closing transactions, and printed once the last one committed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vmctl import drivers, volumes
from vmctl.errors import VmctlError
from vmctl.relocation import LIVE_STATES, relocate

if TYPE_CHECKING:
    from vmctl.progress import Part

# what `last-migration`, the JSON and the table keep of the engine's prediction
PREDICTED_FIELDS = ("total-time", "downtime", "bytes", "storage-bytes", "rounds", "rate", "stop-reason")
MEASURED_FIELDS = (
    "total-time",
    "downtime",
    "bytes",
    "storage-bytes",
    "memory",
    "rounds",
    "rate",
    "wall-time",
)
ROW_FIELDS = (
    "vm",
    "name-label",
    "from",
    "to",
    "predicted-total-time",
    "measured-total-time",
    "predicted-downtime",
    "measured-downtime",
    "predicted-bytes",
    "measured-bytes",
)


@dataclass
class Move:
    """One decided live migration."""

    vm: str
    src: str
    dst: str
    prediction: dict  # the engine's figures (Prediction.as_dict()): rate and downtime target included
    record: dict  # what other-config:last-migration keeps (relocation.record_of and the plan's extras)
    label: str  # the action in errors and in the task: "move 2 of 3 (VM web from h1 to h2)"
    network: str | None = None  # the migration network's uuid, None: the pool's
    vdi_map: dict[str, str] = field(default_factory=dict)  # storage motion: VDI -> target SR
    wave: int = 0  # a plan's wave (host-evacuate, pool-rebalance): the moves of one run at once
    order: int = 0  # its place in the plan: what the command prints follows it


@dataclass
class Shown:
    """What a command prints of the moves it made on a real pool, appended by each move's closing
    transaction: `moves` for JSON and the text view (predicted and measured figures side by
    side), `rows` flat for csv/tsv and --minimal. Printed once the last step committed."""

    moves: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    _order: list[int] = field(default_factory=list)

    def add(self, vm: dict, src: dict, dst: dict, prediction: dict, measured: dict, order: int = 0) -> None:
        """One move made; in the plan's `order`, whichever of a wave's moves ended first."""
        at = sum(1 for o in self._order if o <= order)
        self._order.insert(at, order)
        predicted = {k: prediction.get(k) for k in PREDICTED_FIELDS}
        self.moves.insert(
            at,
            {
                "vm": vm["uuid"],
                "name-label": vm["name-label"],
                "from": src["uuid"],
                "from-name": src["name-label"],
                "to": dst["uuid"],
                "to-name": dst["name-label"],
                "predicted": predicted,
                "measured": {k: measured.get(k) for k in MEASURED_FIELDS},
            },
        )
        row = {"vm": vm["uuid"], "name-label": vm["name-label"], "from": src["uuid"], "to": dst["uuid"]}
        for k in ("total-time", "downtime", "bytes"):
            row[f"predicted-{k}"] = predicted.get(k)
            row[f"measured-{k}"] = measured.get(k)
        if predicted.get("bytes") is not None:  # whole bytes, as the JSON prints them
            row["predicted-bytes"] = int(round(predicted["bytes"]))
        self.rows.insert(at, row)

    def data(self, single: bool) -> object:
        """JSON: one VM's move as an object (vm-migrate of one VM), else the list."""
        return self.moves[0] if single and len(self.moves) == 1 else list(self.moves)


def real_run(txn, pool: str, dry_run: bool) -> bool:
    """Whether moves in `pool` are real migrations now (a libvirt pool, not a dry run)."""
    return not dry_run and drivers.real(txn, pool)


def must_step(txn) -> bool:
    """Whether a further move must wait for a step of its own (this transaction already holds
    a migration)."""
    return drivers.has_final(txn)


def carry_out(
    txn, m: Move, dry_run: bool, quiet: bool, shown: Shown | None = None, bar: Part | None = None
) -> None:
    """Make the decided move `m` happen: records at once (simulated pool, dry run), or a real
    live migration committed by its own closing (see the module docstring). `bar`: its share of
    a progress line it shares with the other moves of its wave (else a line of its own)."""
    vm = txn.get("vm", m.vm)
    if not real_run(txn, vm["pool"], dry_run):
        relocate(txn, m.vm, m.dst, m.vdi_map or None, m.record, quiet)
        return
    from vmctl.drivers.base import MigrationSpec

    driver = drivers.driver_for(txn, vm["pool"])
    src_host, dst_host = txn.get("host", m.src), txn.get("host", m.dst)
    src, dst = drivers.host_target(src_host), drivers.host_target(dst_host)
    motion = StorageMotion.decide(txn, m) if m.vdi_map else StorageMotion()
    spec = MigrationSpec(
        uuid=m.vm,
        title=vm["name-label"],
        bandwidth=float(m.prediction.get("rate") or 0),
        downtime=float(m.prediction.get("downtime-target") or 0.3),
        uri=migration_uri(txn, vm["pool"], m.dst, m.network),
        disks=motion.pairs,
    )
    txn.update("vm", m.vm, {"scheduled-to-be-resident-on": m.dst})

    def migrate():
        from vmctl import progress

        line = bar if bar is not None else progress.bar(m.label, quiet)
        made = []
        try:
            for _, new in motion.pairs:  # the copies' volumes, for libvirt to fill
                driver.volume_create(dst, new)
                made.append(new)
            figures = driver.domain_migrate(src, dst, spec, line)
        except BaseException:
            for new in made:
                _quietly(
                    lambda new=new: driver.volume_delete(dst, new, chain=False), f"remove {new.file_name}"
                )
            raise
        finally:
            if line is not None:
                line.end()
        states = {new.uuid: _read(lambda new=new: driver.volume_state(dst, new)) for _, new in motion.pairs}
        for (old, _), host in zip(motion.pairs, motion.old_hosts):  # the guest no longer reads them
            _quietly(lambda old=old, host=host: driver.volume_delete(host, old), f"delete {old.file_name}")
        return figures, states

    def commit(t, result) -> None:
        figures, states = result
        measured = figures.as_dict()
        record = {**m.record, "measured": measured}
        with drivers.records_only(t):  # what the hosts hold now: their volumes moved already
            moved = relocate(t, m.vm, m.dst, None, record, quiet, copies=motion.copies)
            for new, state in states.items():
                volumes.record_usage(t, new, state)
        if shown is not None:
            shown.add(moved, src_host, dst_host, m.prediction, measured, m.order)

    holds = [drivers.Hold("vm", m.vm, "migrate_send" if motion.copies else "pool_migrate")]
    holds += [drivers.Hold("vdi", u, "copy") for pair in sorted(motion.copies.items()) for u in pair]
    drivers.queue(
        txn,
        drivers.Action(
            m.label, src_host["name-label"], migrate, then=commit, long=True, holds=holds, final=True
        ),
    )


@dataclass
class StorageMotion:
    """The disks a live migration on a real pool moves (vdi:<vdi>=<sr>): their copies' records,
    made when the move is decided, and the volumes on both sides."""

    copies: dict[str, str] = field(default_factory=dict)  # old VDI -> its copy
    pairs: tuple = ()  # (old volume as the source reads it, new volume on the destination)
    old_hosts: tuple = ()  # where each old volume is deleted once the guest left it

    @classmethod
    def decide(cls, txn, m: Move) -> StorageMotion:
        from vmctl.relocation import copy_records

        copies = copy_records(txn, m.vdi_map, by_host=False)
        pairs, old_hosts = [], []
        for old_uuid, new_uuid in sorted(copies.items()):
            old, new = txn.get("vdi", old_uuid), txn.get("vdi", new_uuid)
            fmt = "qcow2" if new["provisioning"] == "thin" else "raw"
            new = txn.update("vdi", new_uuid, {"location": volumes.new_location(new, fmt)})
            old_sr, new_sr = txn.get("sr", old["sr"]), txn.get("sr", new["sr"])
            pairs.append(
                (
                    volumes.volume_spec(txn, old, volumes.sr_target(txn, old_sr, m.src)),
                    volumes.volume_spec(txn, new, volumes.sr_target(txn, new_sr, m.dst)),
                )
            )
            old_hosts.append(drivers.host_target(volumes.volume_host(txn, old_sr)))
        return cls(copies, tuple(pairs), tuple(old_hosts))


def _quietly(fn, what: str) -> None:
    """Tidying up after the migration's outcome is settled: a failure is said, never raised
    (host-sync lists the file it left)."""
    import sys

    try:
        fn()
    except drivers.DriverFault as e:
        sys.stderr.write(f"vmctl: warning: could not {what}: {' '.join(str(e.message).split())}\n")


def _read(fn):
    try:
        return fn()
    except drivers.DriverFault:
        return None  # not measured: the model's figure stays


def migration_uri(txn, pool: str, dst: str, network: str | None) -> str:
    """The migration stream's URI: the destination's address on the migration network (its PIF's
    IP there); empty when it has none, and libvirt uses the destination's own choice."""
    if network is None:
        p = txn.get("pool", pool)
        network = p.get("migration-network") or None
    nets = (
        [network] if network else [n["uuid"] for n in txn.select("network", pool=pool) if _management(txn, n)]
    )
    for net in nets:
        for pif in txn.select("pif", host=dst, network=net):
            if pif["ip"]:
                return f"tcp://{pif['ip']}"
    return ""


def _management(txn, network: dict) -> bool:
    return any(p["management"] for p in txn.select("pif", network=network["uuid"]))


# --- moves decided ahead, made later: host-evacuate, pool-rebalance --------------------------------
def recheck(txn, m: Move) -> Move:
    """A planned move about to be made in a step of its own: the VM must still run or be paused on
    the planned source, free to move, and the destination must still pass the placement filters
    and the migration caps (the moves of its wave decided before it count against them). Returns
    the move, with the engine's prediction for it alone now when the plan had none."""
    from vmctl.engine import waves as wv
    from vmctl.engine.placement import MIGRATE, Scheduler
    from vmctl.engine_adapter import pool_state
    from vmctl.vms import check_vm_operation

    vm = txn.get("vm", m.vm)
    if vm is None:
        raise VmctlError("UUID_INVALID", "The VM no longer exists", [("class", "vm"), ("uuid", m.vm)])
    check_vm_operation(txn, vm, "pool-migrate", LIVE_STATES)
    if vm["resident-on"] != m.src:
        raise VmctlError(
            "OPERATION_NOT_ALLOWED",
            f"VM {vm['name-label'] or vm['uuid']} no longer runs on the planned source host",
            [("vm", txn.ref("vm", vm)), ("host", txn.ref("host", m.src))],
        )
    ps = pool_state(txn, vm["pool"])
    vdi_map = {d: sr for d, sr in m.vdi_map.items() if (v := txn.get("vdi", d)) is not None and v["sr"] != sr}
    Scheduler(ps).check_target(m.vm, m.dst, mode=MIGRATE, vdi_map=vdi_map or None, ha=False)
    _, pred = wv.admit_migration(ps, m.vm, m.dst, network=m.network, vdi_map=vdi_map or None, force=True)
    if m.prediction:
        # the plan's own prediction stays: made for the move in its wave (the links it shares),
        # it is what the dry run printed and what libvirt's stream is limited to
        return dataclasses.replace(m, vdi_map=vdi_map)
    prediction = pred.as_dict()
    prediction.pop("hints", None)
    record = {**m.record, **{k: v for k, v in prediction.items() if k in m.record}}
    return dataclasses.replace(m, prediction=prediction, record=record, vdi_map=vdi_map)


def carry_out_plan(
    txn, moves: list[Move], dry_run: bool, quiet: bool, shown: Shown | None, kind: str = "move"
) -> None:
    """Make a plan's moves happen: every move in this transaction on a simulated pool or a dry
    run; on a real pool every move a step of its own, after this transaction committed, wave by
    wave: the moves of a wave decided one after another (each re-checked on the inventory as it
    is then), then migrating at once, each committed as it ends; the next
    wave starts once the last of these ended."""
    if not moves or not real_run(txn, txn.get("vm", moves[0].vm)["pool"], dry_run):
        for m in moves:
            carry_out(txn, m, dry_run, quiet, shown)
        return
    from vmctl import progress

    waves: dict[int, list[Move]] = {}
    for m in moves:
        waves.setdefault(m.wave, []).append(m)
    plan = object()  # the waves of this plan, apart from any other's
    for n, (wave, members) in enumerate(sorted(waves.items()), 1):
        label = f"wave {n} of {len(waves)} ({len(members)} migration{'s' if len(members) > 1 else ''})"
        line = progress.shared(label, quiet) if len(members) > 1 else None
        for m in members:
            drivers.step(
                txn,
                drivers.Step(
                    m.label,
                    lambda t, m=m, line=line: carry_out(
                        t, recheck(t, m), False, quiet, shown, line.part() if line is not None else None
                    ),
                    kind=kind,
                    group=(plan, wave),
                ),
            )


def label(txn, vm: str, src: str, dst: str, index: int | None = None, count: int | None = None) -> str:
    """How a move is named in errors, tasks and the progress line."""
    v = txn.get("vm", vm)
    name = v["name-label"] or vm
    where = f"from {txn.get('host', src)['name-label']} to {txn.get('host', dst)['name-label']}"
    if index is None:
        return f"migrate VM {name} {where}"
    return f"move {index} of {count} (VM {name} {where})"
