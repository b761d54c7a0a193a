"""The libvirt driver (drivers.md §1, §3): real hosts through `libvirt-python`.

`libvirt` is imported here only, lazily (it costs 35–120 ms), and only when a command acts on a
libvirt pool; it is the optional extra `vmctl[libvirt]`. Connections open on first use, once per
host URI per process (the manager keeps them between commands, and reopens one that closed), and
every libvirt failure leaves here as a DriverFault carrying libvirt's own message and the host it
came from.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from contextlib import contextmanager

from vmctl.drivers.base import DriverFault, HostFacts, HostTarget
from vmctl.drivers.libvirt.compute import ComputeMixin
from vmctl.drivers.libvirt.migration import MigrationMixin
from vmctl.drivers.libvirt.network import NetworkMixin
from vmctl.drivers.libvirt.storage import StorageMixin

VENDORS = {"Intel": "GenuineIntel", "AMD": "AuthenticAMD", "Hygon": "HygonGenuine"}
INSTALL = 'pip install "vmctl[libvirt]" (it builds against the system\'s libvirt: apt-get install libvirt-dev pkg-config gcc python3-dev)'


def load():
    """The libvirt module, or a clear fault naming what to install."""
    try:
        import libvirt
    except ImportError:
        raise DriverFault(f"libvirt-python is not installed: {INSTALL}", code="DRIVER_UNAVAILABLE") from None
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors come back as exceptions only
    return libvirt


def version_text(v: int) -> str:
    """libvirt's packed version number (major * 1,000,000 + minor * 1,000 + release), dotted."""
    return f"{v // 1_000_000}.{v // 1000 % 1000}.{v % 1000}"


def _alive(conn) -> bool:
    try:
        return bool(conn.isAlive())
    except Exception:
        return False


class LibvirtDriver(ComputeMixin, StorageMixin, NetworkMixin, MigrationMixin):
    name = "libvirt"

    def __init__(self) -> None:
        self._conns: dict[str, object] = {}
        # the migrations of a wave run in threads at once, and may open a host's connection together
        self._opening = threading.Lock()

    # --- connections ---------------------------------------------------------------------------------
    def connect(self, host: HostTarget):
        conn = self._conns.get(host.uri)
        if conn is not None and not _alive(conn):
            conn = None  # closed under a process that outlives its commands (the manager): reopen
        if conn is None:
            libvirt = load()
            with self._opening:
                conn = self._conns.get(host.uri)
                if conn is None:
                    try:
                        conn = libvirt.open(host.uri)
                    except libvirt.libvirtError as e:
                        raise DriverFault(str(e), code="HOST_OFFLINE", host=host.name, uri=host.uri) from None
                    self._conns[host.uri] = conn
        return conn

    @contextmanager
    def on(self, host: HostTarget):
        """A connection to `host`; a libvirt error inside becomes a DriverFault for that host."""
        libvirt = load()
        conn = self.connect(host)
        try:
            yield conn
        except libvirt.libvirtError as e:
            raise DriverFault(str(e), host=host.name) from None

    def close(self) -> None:
        for conn in self._conns.values():
            try:
                conn.close()  # type: ignore[attr-defined]
            except Exception:
                pass
        self._conns.clear()

    # --- hosts ---------------------------------------------------------------------------------------
    def probe(self, host: HostTarget) -> HostFacts:
        with self.on(host) as conn:
            caps = ET.fromstring(conn.getCapabilities())
            info = conn.getInfo()  # [arch, memory MiB, cpus, MHz, nodes, sockets, cores, threads]
            version = conn.getVersion()
        cpu = caps.find("host/cpu")
        vendor = (cpu.findtext("vendor") if cpu is not None else None) or ""
        model = (cpu.findtext("model") if cpu is not None else None) or ""
        flags = sorted(
            {f.get("name", "") for f in cpu.iter("feature")} - {""} if cpu is not None else set()
        ) or sorted({f.tag for f in cpu.find("features") or ()} if cpu is not None else set())
        cpu_xml = ET.tostring(cpu, encoding="unicode") if cpu is not None else ""
        return HostFacts(
            cpu_vendor=VENDORS.get(vendor, vendor or "unknown"),
            cpu_model=model,
            cpu_family=0,
            cpu_flags=tuple(flags),
            cpu_count=int(info[2]),
            memory_total=int(info[1]) * 1024**2,
            software_version=version_text(version),
            cpu_xml=cpu_xml,
        )
