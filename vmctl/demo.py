"""`vmctl demo`: a realistic datacenter, deterministic for a seed (cli.md §7)."""

from __future__ import annotations

import random
import sys

from vmctl.errors import VmctlError

GiB = 1024**3

# Host SKUs: (cores, memory GiB, vendor, flags)
SKUS = [
    (32, 256, "GenuineIntel", "sse4_2,avx,avx2,aes,vmx"),
    (48, 384, "GenuineIntel", "sse4_2,avx,avx2,avx512f,aes,vmx"),
    (64, 512, "GenuineIntel", "sse4_2,avx,avx2,avx512f,aes,vmx,amx"),
]
# VM flavours: (vcpus, memory GiB, weight)
FLAVOURS = [(1, 2, 30), (2, 4, 30), (4, 8, 20), (8, 16, 12), (16, 64, 6), (32, 128, 2)]


def run(opts, pools: int, hosts: int, vms: int, seed: int, argv: list[str]) -> int:
    from vmctl.api import invoke
    from vmctl.cli.app import command_line
    from vmctl.store.txn import Store
    from vmctl.units import UuidSource

    if pools > hosts:
        raise VmctlError("INVALID_VALUE", "A demo needs at least one host per pool", [("name", "pools"), ("value", pools)])
    store = Store(opts.db, timeout=opts.timeout, dry_run=opts.dry_run, uuids=UuidSource(f"demo:{seed}"),
                  on_warning=lambda line: sys.stderr.write(line + "\n"))
    rng = random.Random(seed)
    summary: dict = {}

    def body(txn):
        if txn.count("pool"):
            raise VmctlError("INVENTORY_NOT_EMPTY", "The inventory already holds pools; use --db PATH for a new file",
                             [("db", store.db)])
        o = {"yes": True, "quiet": True}
        pool_uuids = []
        for p in range(pools):
            pool_uuids.append(invoke(txn, "pool-create", [f"name-label=pool{p + 1}"], o).value)
        host_count = [0] * pools
        for h in range(hosts):
            p = h % pools
            cores, mem, vendor, flags = SKUS[(h // pools) % len(SKUS)]
            host_count[p] += 1
            invoke(txn, "host-add", [f"name-label=pool{p + 1}-h{host_count[p]:02d}", f"address=10.{p}.0.{host_count[p] + 10}",
                                     f"cpu-count={cores}", f"memory-total={mem}GiB", f"pool={pool_uuids[p]}",
                                     f"cpu-vendor={vendor}", f"cpu-flags={flags}", "software-version=8.2.1",
                                     "memory-overhead=4GiB", "pifs=eth0,eth1"], o)
        weights = [w for *_, w in FLAVOURS]
        for i in range(vms):
            vcpus, mem, _ = rng.choices(FLAVOURS, weights)[0]
            p = i % pools
            invoke(txn, "vm-create", [f"name-label=vm{i + 1:04d}", f"pool={pool_uuids[p]}", f"vcpus={vcpus}",
                                      f"memory={mem}GiB"], o)
        # Every VM is started through the engine: one batch placement per pool (engine.md §2.3),
        # deterministic for the seed; VMs that do not fit stay halted.
        running = start_all(txn, pool_uuids)
        summary.update(pools=pools, hosts=hosts, vms=vms, running=running)
        return None

    command = command_line(argv)
    store.run(body, True, finish=lambda txn: store.append_journal(txn, command))
    store.dispose()
    sys.stdout.write(f"demo (seed {seed}): {summary['pools']} pools, {summary['hosts']} hosts, {summary['vms']} VMs "
                     f"({summary['running']} running)\n")
    return 0


def start_all(txn, pool_uuids: list[str]) -> int:
    """Batch-place and start every halted VM of the demo's pools; return how many run."""
    from vmctl.commands.vmpower import boot
    from vmctl.engine.placement import START, Scheduler, place_batch
    from vmctl.engine_adapter import pool_state

    started = 0
    for p in pool_uuids:
        sched = Scheduler(pool_state(txn, p))
        halted = sorted(u for u, v in sched.pool.vms.items() if v.power_state == "halted")
        res = place_batch(sched, halted, mode=START)
        for vm, host in res.placements:
            boot(txn, txn.get("vm", vm), host)
            started += 1
    return started
