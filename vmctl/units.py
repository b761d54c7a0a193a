"""Value syntax shared by the grammar, the commands and the renderers: sizes, rates,
durations, booleans, integers, MAC addresses, uuids and their plain rendering (cli.md §2-§3)."""

from __future__ import annotations

import hashlib
import re
import uuid as _uuid
from collections.abc import Container

from vmctl.errors import VmctlError

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4

# Largest value any size field may hold: signed 64-bit, the database column type.
SIZE_MAX = 2**63 - 1
INT_MAX = 2**63 - 1

_SUFFIX = {
    "": 1,
    "b": 1,
    "k": KiB,
    "kib": KiB,
    "m": MiB,
    "mib": MiB,
    "g": GiB,
    "gib": GiB,
    "t": TiB,
    "tib": TiB,
}
# `4GB` means 4×10⁹ to some readers and 4×2³⁰ to others: refused, with the binary spelling to use
_DECIMAL_SUFFIX = {"kb": "KiB", "mb": "MiB", "gb": "GiB", "tb": "TiB"}
# ASCII digits only: `\d` would also take `٣` or `३`
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def invalid(name: str, value: object) -> VmctlError:
    return VmctlError("INVALID_VALUE", params=[("name", name), ("value", value)])


def parse_size(text: str, name: str = "size", allow_relative: bool = False) -> int | tuple[str, int]:
    """`4GiB` -> 4294967296. Binary suffixes (K=KiB, as in xe); a decimal needs a suffix.
    With allow_relative, `+N` returns ("+", N)."""
    if isinstance(text, bool):
        raise invalid(name, text)
    if isinstance(text, int):
        if text < 0 or text > SIZE_MAX:
            raise invalid(name, text)
        return text
    s = str(text)
    if allow_relative and s.startswith("+"):
        return ("+", parse_size(s[1:], name))
    m = _SIZE_RE.match(s)
    if not m:
        raise invalid(name, s)
    num, suf = m.group(1), m.group(2).lower()
    if suf in _DECIMAL_SUFFIX:
        binary = _DECIMAL_SUFFIX[suf]
        raise VmctlError(
            "INVALID_VALUE",
            f"{name}: {s.strip()} is ambiguous; write {num}{binary} (binary, {num}{binary[0]}) "
            "or the plain number of bytes",
            [("name", name), ("value", s)],
        )
    if suf not in _SUFFIX:
        raise invalid(name, s)
    if "." in num:
        if not suf:
            raise invalid(name, s)
        whole, frac = num.split(".")
        # exact rational arithmetic, rounded to the nearest byte (half up)
        denom = 10 ** len(frac)
        numer = int(whole or "0") * denom + int(frac or "0")
        value = (numer * _SUFFIX[suf] * 2 + denom) // (2 * denom)
    else:
        value = int(num) * _SUFFIX[suf]
    if value > SIZE_MAX:
        raise invalid(name, s)
    return value


# --- names and descriptions --------------------------------------------------------------------
# C0 controls, DEL and C1 controls: what a terminal may act on (ESC, CSI...) or what breaks a line
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")
# The free-text fields refused control characters wherever they are set (also as new-name-label...)
TEXT_FIELDS = ("name-label", "name-description")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """Control characters as `\\n`, `\\r`, `\\t` or `\\xHH`: what any text output prints, so that
    no stored value can move the cursor, recolour a terminal or break a line."""
    if not CONTROL_RE.search(text):
        return text
    return CONTROL_RE.sub(lambda m: _ESCAPES.get(m.group()) or f"\\x{ord(m.group()):02x}", text)


def is_text_field(name: str) -> bool:
    return name.removeprefix("new-") in TEXT_FIELDS


def parse_text(text: object, name: str) -> str:
    """A name-label or name-description: any text but control characters."""
    s = str(text)
    m = CONTROL_RE.search(s)
    if m:
        raise VmctlError(
            "INVALID_VALUE",
            f"{name} must not contain control characters ({escape_controls(m.group())} at position {m.start()})",
            [("name", name), ("value", s)],
        )
    return s


def empty_name(name: str) -> VmctlError:
    return VmctlError(
        "INVALID_VALUE",
        f"{name} must not be empty (only a pool may be unnamed)",
        [("name", name), ("value", "")],
    )


def parse_rate(text: str, name: str = "rate") -> int:
    """Sizes per second: `100M` or `100M/s` = 100 MiB/s (engine.md §0)."""
    s = str(text)
    if s.lower().endswith("/s"):
        s = s[:-2]
    v = parse_size(s, name)
    assert isinstance(v, int)
    return v


def parse_duration(text: str, name: str = "duration") -> float:
    """`300ms`, `2s`, `1.5m`, or a bare number of seconds."""
    s = str(text).strip().lower()
    m = re.match(r"^([0-9]+(?:\.[0-9]+)?|\.[0-9]+)(ms|s|m)?$", s)
    if not m:
        raise invalid(name, text)
    v = float(m.group(1))
    unit = m.group(2) or "s"
    return v / 1000 if unit == "ms" else v * 60 if unit == "m" else v


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def parse_bool(text: object, name: str = "value") -> bool:
    if isinstance(text, bool):
        return text
    s = str(text).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise invalid(name, text)


def parse_int(text: object, name: str = "value", lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(text, bool):
        raise invalid(name, text)
    if isinstance(text, int):
        v = text
    else:
        s = str(text).strip()
        if not _INT_RE.fullmatch(s):
            raise VmctlError(
                "INVALID_VALUE",
                f"{name} must be a whole number written with the digits 0-9",
                [("name", name), ("value", text)],
            )
        v = int(s)
    if abs(v) > INT_MAX or (lo is not None and v < lo) or (hi is not None and v > hi):
        raise invalid(name, text)
    return v


def parse_float(text: object, name: str = "value", positive: bool = False) -> float:
    try:
        if isinstance(text, bool):
            raise ValueError
        if not isinstance(text, (int, float)) and not _FLOAT_RE.fullmatch(str(text).strip()):
            raise ValueError  # float() would take `٣`, `1_0`, `inf` and `nan`
        v = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise invalid(name, text) from None
    if v != v or v in (float("inf"), float("-inf")) or (positive and v <= 0):
        raise invalid(name, text)
    return v


def parse_scalar(type_: str, text, name: str, values: tuple[str, ...] = (), allow_relative: bool = False):
    """Text -> a value of one of the scalar argument/field types; other types pass through."""
    if type_ == "int":
        return parse_int(text, name)
    if type_ == "size":
        return parse_size(text, name, allow_relative=allow_relative)
    if type_ == "rate":
        return parse_rate(text, name)
    if type_ == "duration":
        return parse_duration(text, name)
    if type_ == "float":
        return parse_float(text, name)
    if type_ == "bool":
        return parse_bool(text, name)
    if type_ == "enum":
        if text not in values:
            # any case, as xe reads its enums (`type=Disk`, `mode=rw`): the member as declared
            folded = str(text).casefold()
            for member in values:
                if member.casefold() == folded:
                    return member
            raise VmctlError(
                "INVALID_VALUE",
                f"{name} must be one of {', '.join(values)}",
                [("name", name), ("value", text)],
            )
        return text
    if type_ == "list":
        return [x.strip() for x in str(text).split(",") if x.strip()]
    if type_ == "string" and is_text_field(name):
        return parse_text(text, name)
    return text


_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_uuid(text: str) -> bool:
    return bool(_UUID_RE.match(text))


def new_uuid() -> str:
    return str(_uuid.uuid4())


class UuidSource:
    """Makes object uuids: random normally, derived from a seed under `vmctl demo` so that the
    same seed gives byte-identical inventories (cli.md §7)."""

    def __init__(self, seed: int | str | None = None):
        self.seed = seed
        self.counter = 0
        self._ns = None if seed is None else _uuid.uuid5(_uuid.NAMESPACE_URL, f"vmctl-seed:{seed}")

    def __call__(self) -> str:
        if self._ns is None:
            return str(_uuid.uuid4())
        self.counter += 1
        return str(_uuid.uuid5(self._ns, str(self.counter)))


# --- MAC addresses (model.md §3.7) ---------------------------------------------------------------
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def normalise_mac(text: str, force: bool = False) -> str:
    """A user-given MAC: six colon-separated pairs of hex digits, stored lower case. Any such MAC
    is accepted, as XAPI accepts it (Helpers.is_valid_MAC: Xen's 00:16:3e prefix, multicast,
    one another VM uses); `force` is kept for callers that passed it."""
    if not isinstance(text, str) or not _MAC_RE.match(text):
        raise VmctlError("MAC_INVALID", "The MAC address is not valid", [("mac", text)])
    return text.lower()


def generated_mac(seed: str, used: Container[str]) -> str:
    """First six bytes of SHA-256(`<seed>:<k>`), unicast and locally administered, for the
    smallest k giving a MAC not in `used`. `seed` is `<vm uuid>:<device>` (or host uuid:device)."""
    k = 0
    while True:
        d = bytearray(hashlib.sha256(f"{seed}:{k}".encode()).digest()[:6])
        d[0] = (d[0] & 0xFE) | 0x02
        mac = ":".join(f"{b:02x}" for b in d)
        if mac not in used:
            return mac
        k += 1


# --- rendering (cli.md §3) -----------------------------------------------------------------------
def humanise_size(n: int) -> str:
    """Binary suffix, the largest unit giving at least 1, one decimal at most: `9.5 GiB`."""
    if n is None:
        return ""
    for unit, scale in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n) >= scale:
            v = round(n / scale, 1)
            s = f"{v:.1f}".rstrip("0").rstrip(".")
            return f"{s} {unit}"
    return f"{n} B"


def humanise_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f}".rstrip("0").rstrip(".") + " ms"
    if seconds < 60:
        return f"{seconds:.2f}".rstrip("0").rstrip(".") + " s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s"
