"""A small Linux guest for measuring live migrations on the lab (drivers.md §6 tier 3, §7).

Built from Debian's packages, nothing installed on the machine: the kernel of the
`linux-image-amd64` package and `busybox-static`, fetched with `apt-get download` into a cache
directory, and `dirty.c` (beside this file) compiled statically with the machine's gcc. The
initramfs holds busybox, the compiled program and an `init` script; the guest boots straight from
the kernel and the initramfs (the VM's `other-config:kernel` and `initrd`), under software
emulation (`other-config:emulation=tcg`), with its console on the serial port. Its kernel command
line says how fast the program dirties memory: `dirty=RATE` in MiB/s (`dirty_size=MiB` for the
working set, default all the memory available less a reserve).

The built guest is kept in the cache (default /var/cache/vmctl/linux-guest, or
$VMCTL_GUEST_CACHE): a second build with the same packages and sources reuses it without asking
apt anything. The directory is readable by everyone: QEMU in the lab's hosts runs unprivileged
and reads the kernel and initramfs from there.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = "/var/cache/vmctl/linux-guest"
KERNEL_META = "linux-image-amd64"
BUSYBOX = "busybox-static"
# quiet: the console carries the workload's lines, not the boot log; panic=-1: a guest whose init
# dies reboots at once (on_reboot) rather than hanging (the workload notices: its counters restart).
# pti=on: the kernel switches page tables on every entry and exit, and each switch empties the
# emulator's TLB. Without it, after about one migration in five the guest's kernel found its own
# lists corrupted (QEMU 7.2 under TCG; most likely writes through a TLB entry that outlived a
# dirty-bitmap sync went untracked, so the destination got an older copy of the page); with it,
# none in some 60 migrations since.
KERNEL_ARGS = "console=ttyS0 quiet panic=-1 pti=on"

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
rate=0
size=0
for word in $(cat /proc/cmdline); do
    case "$word" in
        dirty=*) rate="${word#dirty=}" ;;
        dirty_size=*) size="${word#dirty_size=}" ;;
    esac
done
echo "vmctl-guest: up, dirtying $rate MiB/s"
/bin/dirty "$rate" "$size"
echo "vmctl-guest: the workload ended ($?)"
poweroff -f
"""


class GuestBuildError(RuntimeError):
    """The guest cannot be built here (no apt, no gcc, a package that cannot be had): the
    message says what is missing."""


@dataclass(frozen=True)
class Guest:
    kernel: str  # path of the kernel image
    initrd: str  # path of the initramfs (newc cpio, gzip)
    kernel_package: str  # e.g. linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb
    busybox_package: str

    def cmdline(self, dirty_mib_s: float, size_mib: int = 0) -> str:
        """The kernel command line for a guest dirtying `dirty_mib_s` MiB/s of distinct pages."""
        words = [KERNEL_ARGS, f"dirty={dirty_mib_s:g}"]
        if size_mib:
            words.append(f"dirty_size={size_mib}")
        return " ".join(words)


def cache_dir() -> Path:
    return Path(os.environ.get("VMCTL_GUEST_CACHE") or DEFAULT_CACHE)


def sources_digest() -> str:
    """What the initramfs is made of besides the packages: a new program or init, a new build."""
    h = hashlib.sha256()
    h.update((HERE / "dirty.c").read_bytes())
    h.update(INIT.encode())
    return h.hexdigest()[:16]


def build(cache: Path | None = None) -> Guest:
    """The guest, from the cache when it holds one built from the same sources, else built now
    (about 70 MB fetched once; a few seconds)."""
    cache = cache or cache_dir()
    stamp = cache / "guest.json"
    if stamp.exists():
        try:
            made = json.loads(stamp.read_text())
        except ValueError:
            made = {}
        if made.get("sources") == sources_digest() and all(
            os.path.exists(cache / made.get(k, "-")) for k in ("kernel", "initrd")
        ):
            return _guest(cache, made)
    cache.mkdir(parents=True, exist_ok=True)
    _readable(cache)
    debs = cache / "debs"
    debs.mkdir(exist_ok=True)
    os.chmod(debs, 0o755)  # apt's download user writes there (else it warns and downloads as root)
    kernel_deb = _download(debs, _kernel_package())
    busybox_deb = _download(debs, BUSYBOX)
    with tempfile.TemporaryDirectory(prefix="vmctl-guest-") as tmp:
        kernel = _extract(kernel_deb, lambda n: n.startswith("./boot/vmlinuz-"))
        busybox = _extract(busybox_deb, lambda n: n == "./bin/busybox")
        program = Path(tmp) / "dirty"
        _compile(HERE / "dirty.c", program)
        initrd = initramfs(
            {
                "init": (INIT.encode(), 0o755),
                "bin/busybox": (busybox, 0o755),
                "bin/dirty": (program.read_bytes(), 0o755),
            },
            dirs=("bin", "sbin", "usr", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "etc"),
        )
    (cache / "vmlinuz").write_bytes(kernel)
    (cache / "initrd.img").write_bytes(initrd)
    made = {
        "kernel": "vmlinuz",
        "initrd": "initrd.img",
        "kernel-package": kernel_deb.name,
        "busybox-package": busybox_deb.name,
        "sources": sources_digest(),
    }
    for name in ("vmlinuz", "initrd.img"):
        os.chmod(cache / name, 0o644)
    stamp.write_text(json.dumps(made, indent=1) + "\n")
    return _guest(cache, made)


def _guest(cache: Path, made: dict) -> Guest:
    return Guest(
        str(cache / made["kernel"]),
        str(cache / made["initrd"]),
        made.get("kernel-package", ""),
        made.get("busybox-package", ""),
    )


def _readable(path: Path) -> None:
    """The cache and every directory above it traversable by QEMU's unprivileged user."""
    os.chmod(path, 0o755)
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            raise GuestBuildError(
                f"{parent} is not searchable by other users: QEMU could not read the guest's "
                f"kernel from {path} (set VMCTL_GUEST_CACHE to a directory under /var/cache)"
            )


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    if shutil.which(argv[0]) is None:
        raise GuestBuildError(f"{what}: {argv[0]} is not installed")
    p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise GuestBuildError(f"{what}: {' '.join(argv)}: {p.stderr.strip() or p.stdout.strip()}")
    return p.stdout


def _kernel_package() -> str:
    """The versioned kernel package the meta-package depends on now (linux-image-6.1.0-N-amd64)."""
    out = _run(["apt-cache", "depends", KERNEL_META], "find the guest's kernel")
    for line in out.splitlines():
        word = line.strip()
        if word.startswith("Depends:") and "linux-image-" in word:
            return word.split(":", 1)[1].strip()
    raise GuestBuildError(f"find the guest's kernel: {KERNEL_META} depends on no kernel (apt-get update?)")


def _download(debs: Path, package: str) -> Path:
    """The package's .deb in `debs`, downloaded unless a file of that package is there already."""
    prefix = package + "_"
    have = sorted(glob.glob(str(debs / f"{glob.escape(prefix)}*.deb")))
    if not have:
        _run(["apt-get", "download", "-q", package], f"download {package}", cwd=debs)
        have = sorted(glob.glob(str(debs / f"{glob.escape(prefix)}*.deb")))
    if not have:
        raise GuestBuildError(f"download {package}: apt-get left no .deb in {debs}")
    for stale in have[:-1]:
        os.unlink(stale)
    return Path(have[-1])


def _extract(deb: Path, wanted) -> bytes:
    """One file of a .deb's data, read from `dpkg-deb --fsys-tarfile` as a stream."""
    if shutil.which("dpkg-deb") is None:
        raise GuestBuildError("dpkg-deb is not installed")
    # stderr dropped: leaving the stream early makes dpkg-deb complain of a broken pipe
    p = subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert p.stdout is not None
    data = None
    try:
        with tarfile.open(fileobj=p.stdout, mode="r|") as tar:
            for member in tar:
                if member.isfile() and wanted(member.name):
                    f = tar.extractfile(member)
                    assert f is not None
                    data = f.read()
                    break
    finally:
        p.stdout.close()
        p.wait()
    if data is None:
        raise GuestBuildError(f"{deb.name} has no such file")
    return data


def _compile(source: Path, out: Path) -> None:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise GuestBuildError("compile the guest's workload: gcc is not installed (apt-get install gcc)")
    _run([cc, "-static", "-O2", "-o", str(out), str(source)], "compile the guest's workload")


def initramfs(files: dict[str, tuple[bytes, int]], dirs: tuple[str, ...] = ()) -> bytes:
    """A gzip-compressed newc cpio archive of `files` (path -> (content, mode)) and `dirs`, as the
    kernel unpacks an initramfs (the machine may have no cpio program)."""
    out = io.BytesIO()
    ino = 1

    def entry(name: str, mode: int, data: bytes = b"") -> None:
        nonlocal ino
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
        header = b"070701" + b"".join(b"%08X" % v for v in fields)
        out.write(header + name.encode() + b"\0")
        out.write(b"\0" * (-(len(header) + len(name) + 1) % 4))
        out.write(data)
        out.write(b"\0" * (-len(data) % 4))
        ino += 1

    for d in dirs:
        entry(d, 0o040755)
    for name, (data, mode) in files.items():
        entry(name, 0o100000 | mode, data)
    entry("TRAILER!!!", 0)
    return gzip.compress(out.getvalue(), mtime=0)
