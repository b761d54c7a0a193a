"""Domain lifecycle events of the hosts of libvirt pools, followed by the manager: a guest that
powers itself off (or is stopped, paused, resumed or started behind vmctl's back) is recorded as
host-sync --fix would record it, at once, in a transaction whose journal entry is marked as an
event (its command reads `event: ...`).

libvirt delivers events to a process that registered its event loop before opening its
connections: the manager does so at start-up (start), runs the loop in a thread, and keeps one
read-only connection per host of a libvirt pool (refresh, after commands and once a minute), each
with a lifecycle callback. The callback only notes which domain of which host changed; a worker
thread then reads that domain's state from the host under the inventory's lock (so that a vmctl
command acting on it has committed or undone what it did) and makes the records follow, unless a
pending task holds the VM (vmctl's own long operation is under way and will record its outcome).
"""

from __future__ import annotations

import queue
import threading
import time

from vmctl import drivers

REFRESH_SECONDS = 60.0
SETTLE_SECONDS = 0.2  # events come in bursts (stopped, then undefined...): one look for them all


class LifecycleEvents:
    def __init__(self, db: str) -> None:
        self.db = db
        self._libvirt = None
        self._conns: dict[str, tuple[str, object]] = {}  # host uuid -> (uri, read-only connection)
        self._changed: queue.Queue[tuple[str, str]] = queue.Queue()
        self._last_refresh = 0.0
        self._lock = threading.RLock()  # a connection's close callback may run while it is held
        self._refreshing = threading.Lock()
        self._unreachable: dict[str, str] = {}  # host uuid -> the URI that did not answer

    def start(self) -> bool:
        """Register libvirt's event loop (before any connection of this process is opened) and
        start its thread and the worker's; False when libvirt-python is not installed."""
        try:
            import libvirt
        except ImportError:
            return False
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        libvirt.virEventRegisterDefaultImpl()
        self._libvirt = libvirt
        threading.Thread(target=self._loop, name="vmctl-libvirt-events", daemon=True).start()
        threading.Thread(target=self._work, name="vmctl-lifecycle", daemon=True).start()
        return True

    def _loop(self) -> None:
        while True:
            self._libvirt.virEventRunDefaultImpl()  # type: ignore[union-attr]

    # --- which hosts are watched ------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Watch every host of the inventory's libvirt pools (and no other): after a command, which
        may have added or removed one, and once a minute for those other processes add (and those
        that could not be reached before: a command does not wait for them again). The work is
        done in a thread of its own: reaching a host may take a while."""
        if self._libvirt is None:
            return
        now = time.monotonic()
        periodic = now - self._last_refresh >= REFRESH_SECONDS
        if not (force or periodic) or not self._refreshing.acquire(blocking=False):
            return
        if periodic:
            self._last_refresh = now
            self._unreachable.clear()
        threading.Thread(target=self._refresh, name="vmctl-watch-hosts", daemon=True).start()

    def _refresh(self) -> None:
        try:
            try:
                hosts = self._hosts()
            except Exception:  # an inventory that cannot be read now: next time
                return
            with self._lock:
                gone = [u for u in self._conns if u not in hosts or self._conns[u][0] != hosts[u][0]]
                for uuid in gone:
                    self._forget(uuid)
                todo = [(u, h) for u, h in hosts.items() if u not in self._conns]
            for uuid, (uri, resident) in todo:
                if self._unreachable.get(uuid) != uri:
                    self._watch(uuid, uri, resident)
        finally:
            self._refreshing.release()

    def _hosts(self) -> dict[str, tuple[str, list[str]]]:
        """host uuid -> (its URI, the VMs the inventory has resident on it)."""
        from vmctl.store.txn import Store

        def read(txn):
            return {
                h["uuid"]: (
                    drivers.host_target(h).uri,
                    [v["uuid"] for v in txn.select("vm", resident_on=h["uuid"])],
                )
                for p in txn.select("pool", driver="libvirt")
                for h in txn.select("host", pool=p["uuid"])
            }

        store = Store(self.db, read_only=True)
        try:
            return store.run(read, False)[0]
        finally:
            store.dispose()

    def _watch(self, host: str, uri: str, resident: list[str]) -> None:
        """Watch a host's events, after a first look at every domain it has and every VM said to
        run there: what changed while nothing watched (no manager ran) is recorded too."""
        libvirt = self._libvirt
        lifecycle = libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE  # type: ignore[union-attr]
        try:
            conn = libvirt.openReadOnly(uri)  # type: ignore[union-attr]
            conn.domainEventRegisterAny(None, lifecycle, self._noted, host)
            conn.registerCloseCallback(lambda *_: self._lost(host), None)
            conn.setKeepAlive(5, 3)
            domains = [d.name() for d in conn.listAllDomains()]
        except libvirt.libvirtError:  # type: ignore[union-attr]  # unreachable now: once a minute
            self._unreachable[host] = uri
            return
        with self._lock:
            self._conns[host] = (uri, conn)
        for vm in sorted(set(domains) | set(resident)):
            self._changed.put((host, vm))

    def _forget(self, host: str) -> None:
        _, conn = self._conns.pop(host)
        try:
            conn.unregisterCloseCallback()  # type: ignore[attr-defined]
            conn.close()  # type: ignore[attr-defined]
        except Exception:
            pass

    def _lost(self, host: str) -> None:
        """The host's connection closed (libvirtd restarted, the network): watch it again soon."""
        with self._lock:
            self._conns.pop(host, None)
        self._last_refresh = 0.0

    def _noted(self, _conn, dom, _event, _detail, host) -> None:
        self._changed.put((host, dom.name()))

    # --- making the records follow ------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            changed = {self._changed.get()}
            time.sleep(SETTLE_SECONDS)
            while not self._changed.empty():
                changed.add(self._changed.get())
            for host, vm in sorted(changed):
                try:
                    self._follow(host, vm)
                except Exception:  # a host or an inventory unreachable now: host-sync remains
                    pass

    def _state(self, host: str, vm: str) -> str | None:
        """The domain's state on the host now, in vmctl's words; None when it cannot be read."""
        libvirt = self._libvirt
        with self._lock:
            watched = self._conns.get(host)
        if watched is None:
            return None
        try:
            dom = watched[1].lookupByName(vm)  # type: ignore[attr-defined]
        except libvirt.libvirtError as e:  # type: ignore[union-attr]
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:  # type: ignore[union-attr]
                return "halted"
            return None
        state = dom.state()[0]
        if state in (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PMSUSPENDED):  # type: ignore[union-attr]
            return "paused"
        if state in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED):  # type: ignore[union-attr]
            return "halted"
        return "running"

    def _differs(self, txn, host_uuid: str, vm_uuid: str) -> str | None:
        """The state the VM's records should follow (its domain's on the host), when they differ
        and no pending task of vmctl's acts on it; else None."""
        vm, host = txn.get("vm", vm_uuid), txn.get("host", host_uuid)
        if vm is None or host is None or not drivers.real(txn, host["pool"]):
            return None  # not a domain of vmctl's, or no longer a host of a real pool
        if txn.held_by("vm", vm_uuid) is not None:
            return None  # vmctl's own long operation acts on it and records its outcome
        real = self._state(host_uuid, vm_uuid)
        if real is None:
            return None
        here = vm["resident-on"] == host_uuid and vm["power-state"] in ("running", "paused")
        if (here and real == vm["power-state"]) or (not here and real == "halted"):
            return None
        return real

    def _follow(self, host_uuid: str, vm_uuid: str) -> None:
        from vmctl import sync
        from vmctl.runner import Options, Runner

        runner = Runner(Options(db=self.db, yes=True, quiet=True), "event")
        # a first look without the lock (most events are vmctl's own, already recorded)
        if runner.transaction(lambda t: self._differs(t, host_uuid, vm_uuid), write=False) is None:
            return

        def body(txn) -> None:
            real = self._differs(txn, host_uuid, vm_uuid)  # again, under the lock
            if real is None:
                return
            vm, host = txn.get("vm", vm_uuid), txn.get("host", host_uuid)
            name, was = vm["name-label"], vm["power-state"]  # the row changes below
            with drivers.records_only(txn):
                done = sync.follow_domain(txn, vm_uuid, real, host_uuid)
            runner.command_line = (
                f"event: VM {name} ({vm_uuid}) is {real} on {host['name-label']} (was {was}): {done}"
            )

        runner.transaction(body)
