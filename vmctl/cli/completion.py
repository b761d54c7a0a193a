"""Shell completion (cli.md §6): the scripts for bash, zsh and fish call back
`vmctl __complete SHELL ...` (see `fast_complete`), answered here from the generated table data
(`_completion_data.py`) and, for values, plain sqlite3 reads of the inventory. No typer, rich,
yaml or SQLAlchemy: a TAB press must cost little more than starting Python."""

from __future__ import annotations

import os
import shlex
import sys

SCRIPT_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "completions"
)
FILES = {"bash": "vmctl.bash", "zsh": "_vmctl", "fish": "vmctl.fish"}


def script(shell: str) -> str:
    from vmctl.cli.gendocs import completion_script

    return completion_script(shell)


# --- reading the line ---------------------------------------------------------------------------------
SENTINEL = "\x01"


def split_line(line: str) -> tuple[list[str], str]:
    """Words before the cursor, and the (unquoted) word being completed. A sentinel appended to
    the line marks the cursor, so escaped spaces and open quotes are read as the shell reads them:
    a quote left open at the cursor is closed there, as the user will close it."""
    for closing in ("", "'", '"'):
        lex = shlex.shlex(line + SENTINEL + closing, posix=True)
        lex.whitespace_split = True
        lex.commenters = ""
        try:
            words = list(lex)
        except ValueError:  # a quote left open, or not that one
            continue
        if not words or not words[-1].endswith(SENTINEL):
            return words, ""
        return words[:-1], words[-1][:-1]
    # not readable as a shell line (a quote open before the cursor's word): whitespace-separated
    pieces = line.split()
    if line[-1:].isspace():
        pieces.append("")
    return pieces[:-1], pieces[-1] if pieces else ""


def _long_option(key: str) -> str | None:
    """The global long option `--key` names, as getopt_long reads it (a unique prefix will do)."""
    from vmctl.cli.grammar import LONG_OPTIONS

    names = [n for n, _ in LONG_OPTIONS]
    if key in names:
        return key
    matches = [n for n in names if n.startswith(key)] if key else []
    return matches[0] if len(matches) == 1 else None


def _read_globals(words: list[str]) -> tuple[dict, list[str], str | None]:
    """Read the words before the cursor as getopt_long reads the global options (`--db=F` and
    `--db F`, `--ho=h1`, `-f json`, `-fjson`): the options given, the words of the command segment
    the cursor is in, and the option whose value the current word is when it stands as a word of
    its own (`-f <TAB>`, `--host <TAB>`), else None."""
    from vmctl.cli.grammar import LONG_OPTIONS, OPT, REQ, SHORT_OPTIONS

    kinds = dict(LONG_OPTIONS)
    given: dict = {}
    i = 1 if words and os.path.basename(words[0]).startswith("vmctl") else 0
    while i < len(words) and words[i].startswith("-") and words[i] not in ("-", "--"):
        w = words[i]
        i += 1
        if w.startswith("--"):
            key, eq, val = w[2:].partition("=")
            name = _long_option(key)
            if name is None:
                continue
            if kinds[name] == REQ and not eq:
                if i == len(words):
                    return given, [], name
                val = words[i]
                i += 1
            given[name] = val
            continue
        for j in range(1, len(w)):  # a cluster of short options: -qt5, -f json
            name, kind = SHORT_OPTIONS.get(w[j], ("", OPT))
            if kind == OPT:  # -v's optional value is the rest of the word; unknown: skip the word
                break
            if kind == REQ:
                val = w[j + 1 :]
                if not val:
                    if i == len(words):
                        return given, [], name
                    val = words[i]
                    i += 1
                given[name] = val
                break
    segment: list[str] = []
    for w in words[i:]:
        if w == "--":
            segment = []
        else:
            segment.append(w)
    return given, segment, None


# --- inventory values --------------------------------------------------------------------------------
def _conn(g: dict):
    import sqlite3

    db = g.get("db") or os.environ.get("VMCTL_DB")
    if not db:
        from vmctl.store.txn_paths import default_db

        db = default_db()
    if "://" in db or not os.path.isfile(db):
        return None
    try:
        return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return None


def _names(g: dict, cls: str) -> list[str]:
    from vmctl.cli import _completion_data as data

    table, named = data.TABLES.get(cls, (None, False))
    conn = _conn(g) if table else None
    if conn is None:
        return []
    try:
        col = "name_label" if named else "uuid"
        where = ""
        if cls == "vm":
            where = " WHERE is_a_template = 0 AND is_a_snapshot = 0"
        elif cls == "template":
            where = " WHERE is_a_template = 1 AND is_a_snapshot = 0"
        elif cls == "snapshot":
            where = " WHERE is_a_snapshot = 1"
        return sorted({r[0] for r in conn.execute(f'SELECT {col} FROM "{table}"{where}') if r[0]})
    except Exception:
        return []
    finally:
        conn.close()


def _hosts_for_vm(g: dict, vm_name: str) -> list[str] | None:
    """Live, enabled hosts of the VM's pool with room for its memory (None: not cheap to know).
    The charge is the pool policy's (model.md §3.9): static-max under `none`, max(dynamic-min,
    reservation) under `dynamic`, plus the overhead."""
    conn = _conn(g)
    if conn is None:
        return None
    try:
        cols = "memory_static_max, memory_dynamic_min, memory_reservation, vcpus"
        vm = conn.execute(
            f"SELECT pool, {cols} FROM vm WHERE name_label = ? OR uuid = ?", (vm_name, vm_name)
        ).fetchall()
        if len(vm) != 1:
            return None
        pool, *mine = vm[0]
        policy = conn.execute("SELECT memory_overcommit_policy FROM pool WHERE uuid = ?", (pool,)).fetchone()
        if policy is None or policy[0] not in ("none", "dynamic"):
            return None

        def charge(smax: int, dmin: int, reservation: int, vc: int) -> int:
            overhead = -(-(4 * 2**20 + vc * 2**20 + -(-smax // 128)) // 2**20) * 2**20
            return (smax if policy[0] == "none" else max(dmin, reservation)) + overhead

        need, vcpus = charge(*mine), mine[-1]
        out = []
        for uuid, name, total, hov, oc, cpus in conn.execute(
            "SELECT uuid, name_label, memory_total, memory_overhead, other_config, cpu_count FROM host "
            "WHERE pool = ? AND live = 1 AND enabled = 1",
            (pool,),
        ):
            used = sum(
                charge(*row)
                for row in conn.execute(
                    f"SELECT {cols} FROM vm WHERE resident_on = ? AND power_state IN ('running', 'paused')",
                    (uuid,),
                )
            )
            import json

            reserved = int(json.loads(oc).get("memory-reserved", 0) or 0)
            if vcpus <= cpus and total - hov - reserved - used >= need:
                out.append(name)
        return sorted(out)
    except Exception:
        return None
    finally:
        conn.close()


def _switch_names(g: dict, kind: str) -> list[str]:
    conn = _conn(g)
    if conn is None:
        return []
    try:
        host = g.get("host") or os.environ.get("VMCTL_HOST")
        if host:
            row = conn.execute(
                "SELECT uuid FROM host WHERE uuid = ? OR name_label = ?", (host, host)
            ).fetchall()
        else:
            row = conn.execute("SELECT uuid FROM host").fetchall()
        if len(row) != 1:
            return []
        h = row[0][0]
        table = {"bridge": "ovs_bridge", "port": "ovs_port", "iface": "ovs_interface"}[kind]
        names = {r[0] for r in conn.execute(f"SELECT name FROM {table} WHERE host = ?", (h,))}
        if kind == "bridge":  # fake bridges are ports with fake_bridge set
            names |= {
                r[0]
                for r in conn.execute("SELECT name FROM ovs_port WHERE host = ? AND fake_bridge = 1", (h,))
            }
        return sorted(names)
    except Exception:
        return []
    finally:
        conn.close()


# --- candidates --------------------------------------------------------------------------------------
def _option_values(g: dict, option: str) -> list[str]:
    """The values completion offers for a global option: the inventory's hosts, the output formats."""
    if option == "host":
        return _names(g, "host")
    if option == "format":
        from vmctl.cli.grammar import FORMATS

        return list(FORMATS)
    return []


def candidates(words: list[str], cur: str) -> list[str]:
    from vmctl.cli import _completion_data as data

    g, seg, pending = _read_globals(words)
    if pending:  # the value of a global option given as the next word: `-f <TAB>`
        return [v for v in _option_values(g, pending) if v.startswith(cur)]
    cmd_words = [w for w in seg if not w.startswith("-")]
    if not cmd_words:  # completing the command name or a global option (or its value)
        if cur.startswith("--") and "=" in cur:
            key, _, partial = cur[2:].partition("=")
            option = _long_option(key)
            values = _option_values(g, option) if option else []
            return [f"--{key}={v}" for v in values if v.startswith(partial)]
        if cur.startswith("-"):
            return [o for o in data.GLOBAL_OPTIONS if o.startswith(cur)]
        return [c for c in data.COMMANDS if c.startswith(cur)]
    name = cmd_words[0]
    spec = data.COMMANDS.get(name)
    if spec is None:
        return []
    style, keys, flags, values, positional = spec
    if style == "xe":  # the output options an xe-style command takes among its arguments
        if seg[-1] in ("-f", "--format"):
            return [v for v in _option_values(g, "format") if v.startswith(cur)]
        if cur.startswith("--format="):
            return [f"--format={v}" for v in _option_values(g, "format") if v.startswith(cur[9:])]
    if cur.startswith("-"):
        return [f for f in flags if f.startswith(cur)]
    if style == "ovs":
        idx = len(cmd_words) - 1
        kinds = positional
        kind = kinds[min(idx, len(kinds) - 1)] if kinds else None
        if kind in ("bridge", "port", "iface"):
            pool = _switch_names(g, kind)
        elif kind == "table":
            pool = ["Bridge", "Port", "Interface"]
        elif kind and kind.startswith("enum:"):
            pool = kind[5:].split("|")
        else:
            pool = []
        return [p for p in pool if p.startswith(cur)]
    if style == "util":
        if name == "help":
            return [p for p in data.COMMANDS if p.startswith(cur)]
        if positional and len(cmd_words) == 1:  # the first word: completion bash|..., lab up|...
            return [p for p in positional[0][5:].split("|") if p.startswith(cur)]
        return []
    if "=" not in cur:
        given = {w.split("=", 1)[0] + "=" for w in cmd_words[1:] if "=" in w}
        return [k for k in keys if k.startswith(cur) and (k not in given)] + [
            f for f in flags if f.startswith(cur)
        ]
    key, _, partial = cur.partition("=")
    kind = values.get(key)
    if kind is None:
        return []
    if kind.startswith("enum:"):
        pool = kind[5:].split("|")
    elif kind == "bool":
        pool = ["true", "false"]
    elif kind == "host" and name in data.HOST_FILTERED:
        vm = next((w.split("=", 1)[1] for w in cmd_words[1:] if w.startswith("vm=")), None)
        pool = _hosts_for_vm(g, vm) if vm else None
        if pool is None:
            pool = _names(g, "host")
    else:
        pool = _names(g, kind)
    return [f"{key}={p}" for p in pool if p.startswith(partial)]


# COMP_WORDBREAKS' default characters that end a word and stand as words of their own.
_BASH_BREAKS = "=:><;|&("


def _bash_quote(word: str, quote: str) -> str:
    """A candidate as bash's line needs it: after an open quote readline puts the candidate inside
    that quote (and closes it), elsewhere the characters special to bash are escaped."""
    if quote == "'":
        return word.replace("'", "'\\''")
    if quote == '"':
        return "".join("\\" + ch if ch in '"$`\\' else ch for ch in word)
    return "".join("\\" + ch if ch in " \t\n\\'\"$`!&;|<>()*?[]{}#~" else ch for ch in word)


def _bash_candidates(cands: list[str], cur: str, bash_cur: str) -> list[str]:
    """bash replaces only its own current word, which stops at COMP_WORDBREAKS (= and :): each
    candidate minus the part bash keeps on the line, quoted for it."""
    if bash_cur and all(ch in _BASH_BREAKS for ch in bash_cur):
        # right after `=` or `:` COMP_WORDS holds the break itself as the word, but readline
        # replaces only what follows it (nothing yet): keep the break on the line
        bash_cur = ""
    quote = ""
    try:
        plain_cur = shlex.split(bash_cur)[0] if bash_cur.strip() else bash_cur
    except ValueError:  # a quote still open: readline completes inside it
        quote = bash_cur[:1] if bash_cur[:1] in "'\"" else ""
        plain_cur = split_line(bash_cur)[1]
    keep = cur[: len(cur) - len(plain_cur)] if cur.endswith(plain_cur) else ""
    return [_bash_quote(c[len(keep) :], quote) for c in cands if c.startswith(keep)]


def fast_complete(args: list[str]) -> int:
    """Print the candidates for the word at the cursor, one per line. Each shell hands over what
    it knows in the form it knows best:

    * `vmctl __complete bash LINE CUR`: the line up to the cursor and bash's current word, which
      stops at `=` (COMP_WORDBREAKS); the candidates come back cut and quoted for bash's line.
    * `vmctl __complete zsh|fish WORD... CUR`: the words before the cursor's word and that word up
      to the cursor, the shell's quoting removed; the candidates come back plain (zsh and fish
      quote what they insert)."""
    if not args:
        return 1
    shell = args[0]
    if shell == "bash":
        words, cur = split_line(args[1] if len(args) > 1 else "")
    else:
        words, cur = args[1:-1], (args[-1] if len(args) > 1 else "")
    try:
        cands = candidates(words, cur)
    except Exception:
        return 0
    if shell == "bash":
        cands = _bash_candidates(cands, cur, args[2] if len(args) > 2 else cur)
    sys.stdout.write("".join(c + "\n" for c in cands))
    return 0
