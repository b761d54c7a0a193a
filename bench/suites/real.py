"""Real hosts (drivers.md §3, §5): what a command costs on a libvirt pool next to the same
operation done directly with virsh or qemu-img on the same host, in the same run.

A lab of two hosts is brought up for the run (`vmctl lab up`: root, the lab's packages, no lab
already up; otherwise the suite reports why and measures nothing) and taken down at the end.
Per operation, the median of `repeat` (at least 5) runs of whole `vmctl` processes, of the direct
tool, and of vmctl's own start-up for a writing command (a field set: it opens the inventory for
writing, commits and journals, and touches no host); the figure of merit is

    vmctl / (direct tool + vmctl's start-up)      target ≤ 1.3

for `vm-start`, `vm-shutdown --force`, `vdi-create`, `vdi-resize` and a copy of a 1 GiB disk
holding 256 MiB; with `lab up` and `lab down` wall times. Timings are reported, never gated in ci.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

from bench import common

SUITE = "real"
DEFAULT_SCENARIO = "ci"
SCENARIOS = ("ci",)
TARGET = 1.3
GiB = 1024**3


class _Run:
    def __init__(self, env: dict):
        self.env = env

    def vmctl(self, *args: str, check: bool = True) -> str:
        p = subprocess.run(
            [sys.executable, "-m", "vmctl", *args], env=self.env, capture_output=True, text=True, timeout=600
        )
        if check and p.returncode != 0:
            raise RuntimeError(f"vmctl {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout.strip()

    def tool(self, *argv: str) -> str:
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip()}")
        return p.stdout.strip()


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    for tool in ("virsh", "qemu-img", "qemu-io"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install libvirt-clients qemu-utils)"
    return None


def run(ctx: common.Context) -> common.SuiteResult:
    res = common.SuiteResult(SUITE, ctx.scenario)
    why = _why_not()
    if why:
        res.notes.append(f"not measured: {why}")
        return res
    tmp = tempfile.mkdtemp(prefix="vmctl-bench-real-")
    os.chmod(tmp, 0o755)  # QEMU in the lab's hosts runs unprivileged and must reach DIR
    env = common.process_env(tmp)
    env["VMCTL_DB"] = os.path.join(tmp, "inv.db")
    r = _Run(env)
    lab_dir = os.path.join(tmp, "lab")
    m: dict = {}
    try:
        up = subprocess.run(
            [sys.executable, "-m", "vmctl", "lab", "up", "--dir", lab_dir],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if up.returncode != 0:
            res.notes.append(f"not measured: lab up failed: {up.stderr.strip().splitlines()[0]}")
            return res
        m["lab up (s)"] = round(_measure_up(r, lab_dir, env), 2)
        _operations(r, m, max(5, ctx.repeat), lab_dir)
    finally:
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "vmctl", "lab", "down"], env=env, capture_output=True, timeout=300
        )
        m["lab down (s)"] = round(time.perf_counter() - t0, 2)
        shutil.rmtree(tmp, ignore_errors=True)
    res.engines["vmctl on the lab"] = m
    res.timing = set(m)
    for label in ("vm-start", "vm-shutdown --force", "vdi-create", "vdi-resize", "copy 1 GiB / 256 MiB"):
        key = f"{label} (×)"
        if key in m:
            res.goals.append(
                common.Goal(
                    f"R-{label.split()[0]}",
                    f"{label} ≤ {TARGET:g}× (direct tool + vmctl start-up)",
                    m[key],
                    m[key] <= TARGET,
                    "timing",
                )
            )
    return res


def _measure_up(r: _Run, lab_dir: str, env: dict) -> float:
    """The lab is up already (the first up pays the one-time QEMU capability probe of this
    machine's packages too); a second up/down pair gives the figure a user sees."""
    subprocess.run([sys.executable, "-m", "vmctl", "lab", "down"], env=env, capture_output=True, timeout=300)
    t = _timed(
        lambda: subprocess.run(
            [sys.executable, "-m", "vmctl", "lab", "up", "--dir", lab_dir],
            env=env,
            capture_output=True,
            timeout=300,
            check=True,
        )
    )
    return t


def _operations(r: _Run, m: dict, n: int, lab_dir: str) -> None:
    status = json.loads(r.vmctl("lab", "status", "-f", "json"))
    rows = status if isinstance(status, list) else [status]
    uri = {row["name"]: row["driver-uri"] for row in rows}
    shared = r.vmctl("sr-param-get", "uuid=lab-shared", "param-name=uuid")
    probe = r.vmctl("vdi-create", f"sr-uuid={shared}", "name-label=probe", "virtual-size=1GiB")
    host = "lab1"

    def virsh(*args: str) -> str:
        return r.tool("virsh", "-c", uri[host], *args)

    # vmctl's own start-up for a command that writes: a field set on the same inventory, which
    # opens it for writing, commits and journals, and touches no host. A read (served by the
    # plain-sqlite3 path) is shown beside it.
    read = statistics.median(
        _timed(lambda: r.vmctl("vdi-param-get", f"uuid={probe}", "param-name=virtual-size")) for _ in range(n)
    )
    start_up = statistics.median(
        _timed(lambda i=i: r.vmctl("vdi-param-set", f"uuid={probe}", f"name-description=run {i}"))
        for i in range(n)
    )
    m["vmctl read (s)"] = round(read, 3)
    m["vmctl start-up (s)"] = round(start_up, 3)

    def pair(label: str, ours: list[float], direct: list[float]) -> None:
        o, d = statistics.median(ours), statistics.median(direct)
        m[f"{label} (s)"] = round(o, 3)
        m[f"{label} direct (s)"] = round(d, 3)
        m[f"{label} (×)"] = round(o / (d + start_up), 2)

    # vdi-create / vdi-resize: a 1 GiB thin disk, grown to 2 GiB
    ours, direct, made = [], [], []
    for i in range(n):
        ours.append(
            _timed(
                lambda i=i: made.append(
                    r.vmctl("vdi-create", f"sr-uuid={shared}", f"name-label=b{i}", "virtual-size=1GiB")
                )
            )
        )
        direct.append(
            _timed(lambda i=i: virsh("vol-create-as", shared, f"direct{i}.qcow2", "1G", "--format", "qcow2"))
        )
    pair("vdi-create", ours, direct)
    ours = [_timed(lambda u=u: r.vmctl("vdi-resize", f"uuid={u}", "disk-size=2GiB")) for u in made]
    direct = [
        _timed(lambda i=i: virsh("vol-resize", f"direct{i}.qcow2", "2G", "--pool", shared)) for i in range(n)
    ]
    pair("vdi-resize", ours, direct)

    # a copy of a 1 GiB disk holding 256 MiB
    src = r.vmctl("vdi-create", f"sr-uuid={shared}", "name-label=source", "virtual-size=1GiB")
    path = os.path.join(lab_dir, "shared", r.vmctl("vdi-param-get", f"uuid={src}", "param-name=location"))
    r.tool("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 256M", path)
    ours = [_timed(lambda: r.vmctl("vdi-copy", f"uuid={src}", f"sr-uuid={shared}")) for _ in range(n)]
    src_file = os.path.basename(path)
    direct = [
        _timed(lambda i=i: virsh("vol-clone", src_file, f"clone{i}.qcow2", "--pool", shared))
        for i in range(n)
    ]
    pair("copy 1 GiB / 256 MiB", ours, direct)

    # vm-start / vm-shutdown --force of the lab's tiny template, against define+start and
    # destroy+undefine of the same domain XML on the same host
    vms = [r.vmctl("vm-install", "template=tiny", f"new-name-label=t{i}") for i in range(n)]
    ours_start, ours_stop = [], []
    for u in vms:
        ours_start.append(_timed(lambda u=u: r.vmctl("vm-start", f"uuid={u}", "on=lab1")))
    xml = virsh("dumpxml", vms[0])
    ours_stop = [_timed(lambda u=u: r.vmctl("vm-shutdown", f"uuid={u}", "--force")) for u in vms]
    direct_start, direct_stop = [], []
    for i in range(n):
        f = os.path.join(lab_dir, f"direct{i}.xml")
        with open(f, "w") as out:
            out.write(_renamed(xml, f"direct-{i}"))
        direct_start.append(_timed(lambda f=f, i=i: (virsh("define", f), virsh("start", f"direct-{i}"))))
        direct_stop.append(
            _timed(lambda i=i: (virsh("destroy", f"direct-{i}"), virsh("undefine", f"direct-{i}")))
        )
    pair("vm-start", ours_start, direct_start)
    pair("vm-shutdown --force", ours_stop, direct_stop)


def _renamed(xml: str, name: str) -> str:
    """The same domain under another name and a fresh uuid (its disk is shared read-write by
    nothing else at that moment: the VM it was built for is halted)."""
    root = ET.fromstring(xml)
    root.find("name").text = name  # type: ignore[union-attr]
    u = root.find("uuid")
    if u is not None:
        root.remove(u)
    for iface in root.findall("devices/interface"):
        t = iface.find("target")
        if t is not None:
            iface.remove(t)
        mac = iface.find("mac")
        if mac is not None:
            iface.remove(mac)
    return ET.tostring(root, encoding="unicode")
