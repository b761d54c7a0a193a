"""The lab in the inventory (drivers.md §5 "What lab up registers"), made and removed with the
normal commands in one transaction each, as `vmctl demo` builds its datacenter:

* pool `lab` (driver libvirt) with hosts lab1..labN, each read from its libvirtd by host-add;
* SR `lab-shared` on the directory every host sees (the pool's default SR), a local SR per host;
* network `lab-net` on the Open vSwitch bridge of every host;
* template `tiny`: 128 MiB, 1 vCPU, a 1 GiB thin disk on lab-shared, a NIC on lab-net.

Under sudo, the inventory is the invoking user's (as their own `vmctl` finds it, and owned by
them), so that `sudo vmctl lab up && vmctl vm-install template=tiny ...` works as written.
"""

from __future__ import annotations

import os
import pwd

from vmctl.errors import VmctlError
from vmctl.lab.hosts import OVS_BRIDGE
from vmctl.lab.state import LabState

POOL = "lab"
SHARED_SR = "lab-shared"
NETWORK = "lab-net"
TEMPLATE = "tiny"
LOCAL_SR_PATH = "/var/lib/libvirt/images"  # inside each host: its own private copy
_QUIET = {"yes": True, "quiet": True}


def inventory(opts, environ=os.environ, getpwnam=pwd.getpwnam) -> tuple[str | None, tuple[int, int] | None]:
    """The inventory the lab registers into and, under sudo, the (uid, gid) that must own it.

    --db and VMCTL_DB are taken as given; otherwise root's default inventory, or under sudo the
    invoking user's default inventory (their XDG_DATA_HOME is not known here: the default)."""
    if opts.db or environ.get("VMCTL_DB"):
        return opts.db or environ["VMCTL_DB"], None
    user, uid, gid = environ.get("SUDO_USER"), environ.get("SUDO_UID"), environ.get("SUDO_GID")
    if not (user and uid and gid and uid.isdigit() and gid.isdigit()) or int(uid) == 0:
        return None, None
    try:
        home = getpwnam(user).pw_dir
    except KeyError:
        return None, None
    return os.path.join(home, ".local", "share", "vmctl", "inventory.db"), (int(uid), int(gid))


def give_back(db: str | None, owner: tuple[int, int] | None) -> None:
    """Under sudo: the inventory file, its SQLite companions and the directories made for it
    belong to the invoking user (root made them)."""
    if db is None or owner is None or "://" in db:
        return
    home = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(db))))
    path = os.path.dirname(db)
    while len(path) > len(home):
        if os.stat(path).st_uid == 0:
            os.chown(path, *owner)
        path = os.path.dirname(path)
    for name in (db, db + "-wal", db + "-shm", db + "-journal"):
        if os.path.exists(name):
            os.chown(name, *owner)


def runner(opts, db: str | None, argv: list[str]):
    import dataclasses

    from vmctl.runner import Runner, command_line

    return Runner(dataclasses.replace(opts, db=db), command_line(argv))


def check_free(opts, db: str | None, argv: list[str]) -> None:
    """Before anything starts: the inventory can be opened and holds no pool named lab."""
    r = runner(opts, db, argv)
    store = r.open_store(write=False)
    try:
        taken = r.transaction(lambda txn: _lab_pools(txn), False, store)
    finally:
        store.dispose()
    if taken:
        raise VmctlError(
            "LAB_POOL_EXISTS",
            f"The inventory already has a pool named {POOL}; destroy it or use --db PATH for another inventory",
            [("pool", taken[0]), ("db", store.shown_db)],
        )


def _lab_pools(txn) -> list[str]:
    return sorted(p["uuid"] for p in txn.select("pool") if p["name-label"] == POOL)


def register(lab: LabState, opts, db: str | None, argv: list[str]) -> str:
    """The lab's pool and everything in it, in one transaction; returns the pool's uuid."""
    from vmctl.runner import invoke

    shared_path = os.path.join(lab.dir, "shared")

    def body(txn):
        if _lab_pools(txn):
            raise VmctlError("LAB_POOL_EXISTS", f"The inventory already has a pool named {POOL}")
        pool = invoke(txn, "pool-create", [f"name-label={POOL}", "driver=libvirt"], _QUIET).value
        hosts = []
        for h in lab.hosts:
            # CPU and memory come from the host itself, through libvirt (drivers.md §2)
            args = [f"name-label={h.name}", f"address={h.address}", f"pool={pool}"]
            args += [f"driver-uri={h.driver_uri}", f"ovsdb={h.ovsdb}"]
            hosts.append(invoke(txn, "host-add", args, _QUIET).value)
        shared = invoke(
            txn,
            "sr-create",
            [
                f"name-label={SHARED_SR}",
                "type=file",
                "shared=true",
                f"physical-size={filesystem_size(shared_path)}",
                f"device-config:path={shared_path}",
                f"pool={pool}",
            ],
            _QUIET,
        ).value
        invoke(txn, "pool-param-set", [f"uuid={pool}", f"default-sr={shared}"], _QUIET)
        for h, hu in zip(lab.hosts, hosts):
            local = os.path.join(lab.dir, h.name, LOCAL_SR_PATH.lstrip("/"))
            invoke(
                txn,
                "sr-create",
                [
                    f"name-label={h.name}-local",
                    "type=file",
                    f"host={hu}",
                    f"physical-size={filesystem_size(local)}",
                    f"device-config:path={LOCAL_SR_PATH}",
                ],
                _QUIET,
            )
        network = invoke(
            txn, "network-create", [f"name-label={NETWORK}", f"bridge={OVS_BRIDGE}", f"pool={pool}"], _QUIET
        ).value
        template = invoke(
            txn,
            "vm-create",
            [f"name-label={TEMPLATE}", f"pool={pool}", "vcpus=1", "memory=128MiB", "is-a-template=true"],
            _QUIET,
        ).value
        invoke(txn, "vm-disk-add", [f"vm={template}", "disk-size=1GiB", f"sr-uuid={shared}"], _QUIET)
        invoke(txn, "vif-create", [f"vm-uuid={template}", f"network-uuid={network}", "device=0"], _QUIET)
        return pool

    return runner(opts, db, argv).transaction(body, True)


def unregister(lab: LabState, opts, argv: list[str]) -> None:
    """The lab's pool and everything in it leave the inventory: its hosts fail together (their
    VMs halt; the hosts are about to stop), then each is disabled and forgotten, the master last,
    which removes the pool with all its objects. A pool already gone is fine."""
    from vmctl.runner import invoke

    pool_uuid, db = lab.inventory.get("pool"), lab.inventory.get("db")
    if not pool_uuid or (db and "://" not in db and not os.path.exists(db)):
        return  # never registered, or the inventory file is gone (opening it would make a new one)

    def body(txn):
        pool = txn.get("pool", pool_uuid)
        if pool is None:
            return
        hosts = sorted(
            txn.select("host", pool=pool_uuid), key=lambda h: (h["uuid"] == pool["master"], h["uuid"])
        )
        if not hosts:
            invoke(txn, "pool-destroy", [f"uuid={pool_uuid}"], _QUIET)
            return
        close_interrupted_tasks(txn, pool_uuid)
        invoke(txn, "pool-ha-disable", [f"pool={pool_uuid}"], _QUIET)
        live = [h["uuid"] for h in hosts if h["live"]]
        if live:
            invoke(txn, "host-fail", [f"host={','.join(live)}"], _QUIET)
        for h in hosts:
            invoke(txn, "host-disable", [f"host={h['uuid']}"], _QUIET)
            invoke(txn, "host-forget", [f"host={h['uuid']}", "--force"], _QUIET)

    runner(opts, db, argv).transaction(body, True)


def close_interrupted_tasks(txn, pool_uuid: str) -> None:
    """Close the pending tasks on the pool's objects whose vmctl process is gone (killed in the
    middle of a migration, say), as host-sync --fix does: otherwise they would hold their VMs and
    keep the lab from going down. A task whose process still runs keeps its objects, and the
    command fails OTHER_OPERATION_IN_PROGRESS naming it: wait for it, then run lab down again."""
    from vmctl import drivers, sync

    for f in sync.stale_tasks(txn):
        task = txn.get("task", f.uuid)
        rows = (txn.get(*key.split(":", 1)) for key in task["objects"])
        if any(r is not None and r.get("pool") == pool_uuid for r in rows):
            txn.release(f.uuid)
            with drivers.records_only(txn):
                f.repair(txn)


def filesystem_size(path: str) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize
