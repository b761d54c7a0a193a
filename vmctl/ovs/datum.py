"""OVSDB text syntax: tokens, atoms, data, and the OVSDB notation used for output (network.md §5.3,
§5.4). All messages are those ovs-vsctl 3.1.0 prints; they are part of the contract."""

from __future__ import annotations

from vmctl.errors import OvsError
from vmctl.ovs.schema import Base, ColType

DELIMS = frozenset(":=, []{}!<>")
C_SPACE = " \t\n\v\f\r"
_ALPHA = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGIT = frozenset("0123456789")
_BARE_REST = _ALPHA | _DIGIT | frozenset("_-.")
_HEX = frozenset("0123456789abcdefABCDEF")
_DASHES = (8, 13, 18, 23)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# A datum is (keys, values): keys sorted, values None for sets/scalars or parallel to keys for maps.
Datum = tuple[list, list | None]


def is_uuid(s: str) -> bool:
    """Whether `s` has the shape of a uuid (either case), as OVSDB's uuid parser accepts."""
    if len(s) != 36:
        return False
    return all((c == "-") if i in _DASHES else (c in _HEX) for i, c in enumerate(s))


# ---------------------------------------------------------------- tokens


def parse_token(s: str, pos: int) -> tuple[str, int]:
    """Read one token of `s` from `pos`; return it (quotes kept) and the position after it."""
    out: list[str] = []
    in_quotes = False
    i, n = pos, len(s)
    while i < n:
        c = s[i]
        i += 1
        if c == "\\":
            if in_quotes:
                out.append("\\")  # inside quotes the JSON decoder still needs the backslash
            if i >= n:
                raise OvsError(f"{s[pos:]}: backslash at end of argument")
            out.append(s[i])
            i += 1
        elif not in_quotes and c in DELIMS:
            i -= 1
            break
        else:
            out.append(c)
            if c == '"':
                in_quotes = not in_quotes
    if in_quotes:
        raise OvsError(f"{s[pos:]}: quoted string extends past end of argument")
    return "".join(out), i


def skip_spaces(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in C_SPACE:
        i += 1
    return i


# ---------------------------------------------------------------- C number parsing


def _number_span(s: str) -> tuple[int, int] | None:
    """Where C's strtoll reads a base-10 number in s: (start, end) of the optional sign and the
    digits after leading white space, or None when there are no digits."""
    i = skip_spaces(s, 0)
    j = i
    if j < len(s) and s[j] in "+-":
        j += 1
    k = j
    while k < len(s) and s[k] in _DIGIT:
        k += 1
    return None if k == j else (i, k)


def _strtoll(s: str) -> tuple[int | None, int]:
    """C strtoll in base 10: (value or None when no digits or out of range, index after)."""
    span = _number_span(s)
    if span is None:
        return None, 0
    v = int(s[span[0] : span[1]])
    if v < INT64_MIN or v > INT64_MAX:
        return None, span[1]
    return v, span[1]


def c_atoll(s: str) -> int:
    """C atoll: like strtoll but saturating on overflow and 0 without digits."""
    span = _number_span(s)
    if span is None:
        return 0
    return max(INT64_MIN, min(INT64_MAX, int(s[span[0] : span[1]])))


def c_atoi(s: str) -> int:
    """C atoi on an LP64 system: strtol, then the long converted to int (two's complement)."""
    v = c_atoll(s) & 0xFFFFFFFF
    return v - 2**32 if v >= 2**31 else v


# ---------------------------------------------------------------- JSON strings


def json_unescape(body: str) -> str:
    """Decode the inside of a JSON string literal; raise ValueError with OVS's message."""
    out: list[str] = []
    i, n = 0, len(body)
    simple = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
    while i < n:
        c = body[i]
        if c == '"':
            raise ValueError('quoted string may not include unescaped "')
        if c != "\\":
            out.append(c)
            i += 1
            continue
        i += 1
        if i >= n:
            raise ValueError("quoted string may not end with backslash")
        c = body[i]
        i += 1
        if c in simple:
            out.append(simple[c])
        elif c == "u":
            cp, i = _unicode_escape(body, i)
            if 0xD800 <= cp <= 0xDBFF:
                if body[i : i + 2] != "\\u":
                    raise ValueError("malformed escaped surrogate pair")
                lo, i = _unicode_escape(body, i + 2)
                if not 0xDC00 <= lo <= 0xDFFF:
                    raise ValueError("second half of escaped surrogate pair is not trailing surrogate")
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
            out.append(chr(cp))
        else:
            raise ValueError(f"bad escape \\{c}")
    return "".join(out)


def _unicode_escape(body: str, i: int) -> tuple[int, int]:
    if len(body) - i < 4:
        raise ValueError("quoted string ends within \\u escape")
    h = body[i : i + 4]
    if not all(c in "0123456789abcdefABCDEF" for c in h):
        raise ValueError("malformed \\u escape")
    return int(h, 16), i + 4


_JSON_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def json_quote(s: str) -> str:
    out = ['"']
    for c in s:
        if c in _JSON_ESC:
            out.append(_JSON_ESC[c])
        elif c < " ":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


# ---------------------------------------------------------------- notation


def string_needs_quotes(s: str) -> bool:
    if not s or (s[0] not in _ALPHA and s[0] != "_"):
        return True
    if any(c not in _BARE_REST for c in s[1:]):
        return True
    return s in ("true", "false") or is_uuid(s)


def atom_str(kind: str, v: object) -> str:
    if kind == "string":
        s = v  # type: ignore[assignment]
        return json_quote(s) if string_needs_quotes(s) else s  # type: ignore[arg-type]
    if kind == "boolean":
        return "true" if v else "false"
    return str(v)


def atom_bare(kind: str, v: object) -> str:
    return v if kind == "string" else atom_str(kind, v)  # type: ignore[return-value]


def datum_str(t: ColType, d: Datum) -> str:
    keys, values = d
    kk = t.key.kind
    if values is not None:
        vk = t.value.kind  # type: ignore[union-attr]
        body = ", ".join(f"{atom_str(kk, k)}={atom_str(vk, v)}" for k, v in zip(keys, values))
    else:
        body = ", ".join(atom_str(kk, k) for k in keys)
    if t.n_max > 1 or not keys:
        return ("{%s}" if t.is_map else "[%s]") % body
    return body


def datum_bare(t: ColType, d: Datum) -> str:
    keys, values = d
    kk = t.key.kind
    if values is not None:
        vk = t.value.kind  # type: ignore[union-attr]
        return " ".join(f"{atom_bare(kk, k)}={atom_bare(vk, v)}" for k, v in zip(keys, values))
    return " ".join(atom_bare(kk, k) for k in keys)


def atom_json(kind: str, v: object) -> str:
    """An atom in OVSDB's JSON encoding (RFC 7047 §5.1): a uuid as ["uuid","..."]."""
    if kind == "uuid":
        return f'["uuid",{json_quote(v)}]'  # type: ignore[arg-type]
    if kind == "string":
        return json_quote(v)  # type: ignore[arg-type]
    if kind == "boolean":
        return "true" if v else "false"
    return str(v)


def datum_json(t: ColType, d: Datum) -> str:
    """A datum as ovs-vsctl --format=json prints it: a map as ["map",[[k,v],...]], a set of one
    element as that element, any other set as ["set",[...]]."""
    keys, values = d
    kk = t.key.kind
    if values is not None:
        vk = t.value.kind  # type: ignore[union-attr]
        pairs = ",".join(f"[{atom_json(kk, k)},{atom_json(vk, v)}]" for k, v in zip(keys, values))
        return f'["map",[{pairs}]]'
    if len(keys) == 1:
        return atom_json(kk, keys[0])
    return '["set",[' + ",".join(atom_json(kk, k) for k in keys) + "]]"


# ---------------------------------------------------------------- parsing


def _check_atom(base: Base, v: object) -> None:
    if base.enum is not None and v not in base.enum:
        allowed = ", ".join(atom_str("string", e) for e in base.enum)
        raise OvsError(
            f"constraint violation: {atom_str(base.kind, v)} is not one of the allowed values ([{allowed}])"
        )
    if base.kind == "integer" and (base.lo is not None or base.hi is not None):
        lo, hi = base.lo, base.hi
        if (lo is not None and v < lo) or (hi is not None and v > hi):  # type: ignore[operator]
            if lo is not None and hi is not None:
                msg = f"{v} is not in the valid range {lo} to {hi} (inclusive)"
            elif lo is not None:
                msg = f"{v} is less than minimum allowed value {lo}"
            else:
                msg = f"{v} is greater than maximum allowed value {hi}"
            raise OvsError("constraint violation: " + msg)


def parse_atom(base: Base, s: str, allow_range: bool = False) -> list:
    """Read one atom (or, with allow_range, an integer range A-B) from the token `s`."""
    kind = base.kind
    if kind == "integer":
        if allow_range:
            start, end_i = _strtoll(s)
            if start is not None and end_i < len(s) and s[end_i] == "-":
                end, k = _strtoll(s[end_i + 1 :])
                if end is not None and k == len(s) - end_i - 1:
                    if end < start:
                        raise OvsError(f'"{s}" is not a valid range. Range end cannot be before start.')
                    _check_atom(base, start)
                    _check_atom(base, end)
                    return list(range(start, end + 1))
        v, k = _strtoll(s)
        if v is None or k != len(s):
            raise OvsError(f'"{s}" is not a valid integer or range')
        _check_atom(base, v)
        return [v]
    if kind == "string":
        if s == "":
            raise OvsError('An empty string is not valid as input; use "" to represent the empty string')
        if s[0] == '"':
            if len(s) < 2 or s[-1] != '"':
                raise OvsError(f"{s}: missing quote at end of quoted string")
            try:
                v = json_unescape(s[1:-1])
            except ValueError as e:
                raise OvsError(f"{s}: {e}") from None
        else:
            v = s
        _check_atom(base, v)
        return [v]
    if kind == "boolean":
        if s in ("true", "false"):
            return [s == "true"]
        raise OvsError(f'"{s}" is not a valid boolean (use "true" or "false")')
    if kind == "uuid":
        if is_uuid(s):
            return [s.lower()]
        raise OvsError(f'"{s}" is not a valid UUID')
    raise OvsError(f'"{s}" is not a valid real number')  # no real column is parsed by vmctl


def type_english(t: ColType) -> str:
    key = t.key.kind
    if t.scalar:
        return key
    s = "set" if not t.is_map else "map"
    if t.n_max == 2**32 - 1:
        s += f" of {t.n_min} or more" if t.n_min else " of"
    elif t.n_min:
        s += f" of {t.n_min} to {t.n_max}"
    else:
        s += f" of up to {t.n_max}"
    if t.is_map:
        return f"{s} ({key}, {t.value.kind}) pairs"  # type: ignore[union-attr]
    return f"{s} {key}s"


def parse_datum(t: ColType, s: str) -> Datum:
    """Parse the text of a whole column value (the part after `=` of a set argument)."""
    is_map = t.is_map
    p = skip_spaces(s, 0)
    n = len(s)
    end_delim = ""
    if p < n and s[p] == ("{" if is_map else "["):
        end_delim = "}" if is_map else "]"
        p = skip_spaces(s, p + 1)
    elif p >= n:
        raise OvsError('use "{}" to specify the empty map' if is_map else 'use "[]" to specify the empty set')
    keys: list = []
    values: list = []
    while p < n and s[p] != end_delim:
        if s[p] in DELIMS:
            raise OvsError(f'{s}: unexpected "{s[p]}" parsing {type_english(t)}')
        start = p
        tok, p = parse_token(s, p)
        ks = parse_atom(t.key, tok, allow_range=True)
        if is_map:
            p = skip_spaces(s, p)
            if p < n and s[p] == "=":
                p = skip_spaces(s, p + 1)
                tok, p = parse_token(s, p)
                v = parse_atom(t.value, tok)[0]  # type: ignore[arg-type]
            else:
                # C prints the NUL at the end of the string with %c, which ends the message.
                c = s[p] if p < n else ""
                msg = f'{s[start:]}: syntax error at "{c}'
                raise OvsError(msg + '" expecting "="' if c else msg)
            keys.append(ks[0])
            values.append(v)
        else:
            keys.extend(ks)
        p = skip_spaces(s, p)
        if p < n and s[p] == ",":
            p = skip_spaces(s, p + 1)
    if end_delim:
        if p >= n:
            raise OvsError(f'{s}: missing "{end_delim}" at end of data')
        p = skip_spaces(s, p + 1)
        if p < n:
            raise OvsError(f'{s}: trailing garbage after "{end_delim}"')
    count = len(keys)
    what = "pair(s)" if is_map else "value(s)"
    if count < t.n_min:
        raise OvsError(f"{s}: {count} {what} specified but the minimum number is {t.n_min}")
    if count > t.n_max:
        raise OvsError(f"{s}: {count} {what} specified but the maximum number is {t.n_max}")
    if len(set(keys)) != count:
        raise OvsError(f"{s}: map contains duplicate key" if is_map else f"{s}: set contains duplicate value")
    if is_map:
        pairs = sorted(zip(keys, values))
        return [k for k, _ in pairs], [v for _, v in pairs]
    return sorted(keys), None
