"""`vmctl demo`: a realistic datacenter, deterministic for a seed (cli.md §7)."""

from __future__ import annotations

import random
import sys

from vmctl.errors import VmctlError
from vmctl.vms import boot

GiB = 1024**3

# Host SKUs: (cores, memory GiB, vendor, flags)
SKUS = [
    (32, 256, "GenuineIntel", "sse4_2,avx,avx2,aes,vmx"),
    (48, 384, "GenuineIntel", "sse4_2,avx,avx2,avx512f,aes,vmx"),
    (64, 512, "GenuineIntel", "sse4_2,avx,avx2,avx512f,aes,vmx,amx"),
]
# Templates: (name, vcpus, memory GiB, disk GiB); VM disk sizes in GiB
TEMPLATES = [("small", 1, 2, 20), ("medium", 4, 8, 40), ("large", 16, 64, 100)]
DISKS = (20, 40, 80, 160)
# VM flavours: (vcpus, memory GiB, weight)
FLAVOURS = [(1, 2, 30), (2, 4, 30), (4, 8, 20), (8, 16, 12), (16, 64, 6), (32, 128, 2)]


# Host n (from 1) of pool p (from 0) is at 10.p.0.0/16 + 10 + n: 10.p.0.11 to 10.p.0.255 for the
# first 245, then 10.p.1.0 and on, up to 10.p.255.254 (below the /16's broadcast address).
FIRST_HOST_OFFSET = 11
LAST_HOST_OFFSET = 0xFFFE
# What the demo builds at most: 256 pools, one 10.P.0.0/16 each; and, since the whole datacenter
# is one transaction held in memory (about 40 KB per VM with its disk, VIF and switch port), the
# largest inventory the benchmarks measure (engine.md §8, S2: 2,500 hosts, 40,000 VMs).
MAX_POOLS = 256
MAX_HOSTS = 2_500
MAX_VMS = 40_000


def host_address(pool_index: int, n: int) -> str:
    """The demo address of host n (1, 2, ...) of pool pool_index (0, 1, ...)."""
    offset = FIRST_HOST_OFFSET - 1 + n
    if not (0 <= pool_index < MAX_POOLS and FIRST_HOST_OFFSET <= offset <= LAST_HOST_OFFSET):
        raise ValueError(f"no demo address for host {n} of pool {pool_index}")
    return f"10.{pool_index}.{offset >> 8}.{offset & 0xFF}"


def check_size(pools: int, hosts: int, vms: int) -> None:
    """INVALID_VALUE for a datacenter the demo does not build (beyond its limits, or a pool
    without a host), before anything is opened."""
    in_memory = "the whole datacenter is one transaction, held in memory"
    for name, shown, value, most, why in (
        ("pools", "pools", pools, MAX_POOLS, "one 10.P.0.0/16 address range each"),
        ("hosts", "hosts", hosts, MAX_HOSTS, in_memory),
        ("vms", "VMs", vms, MAX_VMS, in_memory),
    ):
        if value > most:
            raise VmctlError(
                "INVALID_VALUE",
                f"The demo builds at most {most:,} {shown} ({why})",
                [("name", name), ("value", value), ("maximum", most)],
            )
    if pools > hosts:
        raise VmctlError(
            "INVALID_VALUE", "A demo needs at least one host per pool", [("name", "pools"), ("value", pools)]
        )


def run(opts, pools: int, hosts: int, vms: int, seed: int, argv: list[str]) -> int:
    from vmctl.runner import Runner, command_line, invoke
    from vmctl.units import UuidSource

    check_size(pools, hosts, vms)
    runner = Runner(opts, command_line(argv))
    store = runner.open_store(UuidSource(f"demo:{seed}"))
    rng = random.Random(seed)
    summary: dict = {}

    def body(txn):
        if txn.count("pool"):
            raise VmctlError(
                "INVENTORY_NOT_EMPTY",
                "The inventory already holds pools; use --db PATH for a new file",
                [("db", store.shown_db)],
            )
        o = {"yes": True, "quiet": True}
        pool_uuids = []
        for p in range(pools):
            pool_uuids.append(invoke(txn, "pool-create", [f"name-label=pool{p + 1}"], o).value)
        host_count = [0] * pools
        host_uuids: list[list[str]] = [[] for _ in range(pools)]
        for h in range(hosts):
            p = h % pools
            cores, mem, vendor, flags = SKUS[(h // pools) % len(SKUS)]
            host_count[p] += 1
            host_uuids[p].append(
                invoke(
                    txn,
                    "host-add",
                    [
                        f"name-label=pool{p + 1}-h{host_count[p]:02d}",
                        f"address={host_address(p, host_count[p])}",
                        f"cpu-count={cores}",
                        f"memory-total={mem}GiB",
                        f"pool={pool_uuids[p]}",
                        f"cpu-vendor={vendor}",
                        f"cpu-flags={flags}",
                        "software-version=8.2.1",
                        "memory-overhead=4GiB",
                        "pifs=eth0,eth1",
                    ],
                    o,
                ).value
            )
        shared_srs, vm_nets = [], []
        for p, pu in enumerate(pool_uuids):
            # storage: a shared NFS SR per pool (its default SR, where disks and suspend images go)
            # and a local LVM SR on every host
            sr = invoke(
                txn,
                "sr-create",
                [f"name-label=pool{p + 1}-nfs", "type=nfs", "physical-size=64TiB", f"pool={pu}"],
                o,
            ).value
            invoke(txn, "pool-param-set", [f"uuid={pu}", f"default-sr={sr}"], o)
            shared_srs.append(sr)
            for hu in host_uuids[p]:
                name = txn.get("host", hu)["name-label"]
                invoke(
                    txn,
                    "sr-create",
                    [f"name-label={name}-local", "type=lvm", "physical-size=2TiB", f"host={hu}"],
                    o,
                )
            # networks: the eth0 pool network and a VLAN 100 network over eth1 on every host
            vlan = invoke(txn, "network-create", [f"name-label=pool{p + 1}-vlan100", f"pool={pu}"], o).value
            eth1 = txn.select("pif", host=host_uuids[p][0], device="eth1")[0]["uuid"]
            invoke(txn, "pool-vlan-create", [f"pif-uuid={eth1}", "vlan=100", f"network-uuid={vlan}"], o)
            eth0_net = txn.select("pif", host=host_uuids[p][0], device="eth0")[0]["network"]
            vm_nets.append((eth0_net, vlan))
            for tname, tvcpus, tmem, tdisk in TEMPLATES:
                t = invoke(
                    txn,
                    "vm-create",
                    [
                        f"name-label={tname}-pool{p + 1}",
                        f"pool={pu}",
                        f"vcpus={tvcpus}",
                        f"memory={tmem}GiB",
                        "is-a-template=true",
                    ],
                    o,
                ).value
                invoke(txn, "vm-disk-add", [f"vm={t}", f"disk-size={tdisk}GiB", f"sr-uuid={sr}"], o)
        weights = [w for *_, w in FLAVOURS]
        for i in range(vms):
            vcpus, mem, _ = rng.choices(FLAVOURS, weights)[0]
            disk = rng.choice(DISKS)
            p = i % pools
            v = invoke(
                txn,
                "vm-create",
                [f"name-label=vm{i + 1:04d}", f"pool={pool_uuids[p]}", f"vcpus={vcpus}", f"memory={mem}GiB"],
                o,
            ).value
            invoke(txn, "vm-disk-add", [f"vm={v}", f"disk-size={disk}GiB", f"sr-uuid={shared_srs[p]}"], o)
            invoke(txn, "vif-create", [f"vm-uuid={v}", f"network-uuid={vm_nets[p][i % 2]}", "device=0"], o)
        # Every VM is started through the engine: one batch placement per pool (engine.md §2.3),
        # deterministic for the seed; VMs that do not fit stay halted.
        running = start_all(txn, pool_uuids)
        summary.update(
            pools=pools,
            hosts=hosts,
            vms=vms,
            running=running,
            srs=txn.count("sr"),
            networks=txn.count("network"),
            templates=len(TEMPLATES) * pools,
        )
        return None

    try:
        runner.transaction(body, True, store)
    finally:
        store.dispose()
    sys.stdout.write(
        f"demo (seed {seed}): {summary['pools']} pools, {summary['hosts']} hosts, {summary['vms']} VMs "
        f"({summary['running']} running), {summary['templates']} templates, {summary['srs']} SRs, "
        f"{summary['networks']} networks\n"
    )
    return 0


def start_all(txn, pool_uuids: list[str]) -> int:
    """Batch-place and start every halted VM of the demo's pools; return how many run."""
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
