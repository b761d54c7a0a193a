"""The command table: every command declared once, with its arguments, flags, help and the
function that runs it. The CLI runner, `--help`, `vmctl help`, `--commands`, the man page and
the completion scripts are all generated from it (architecture.md §1).

A command function receives a :class:`Ctx` and returns a result (Records, Value, Text, Data or
None). It never prints, never parses argv and never commits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Arg:
    name: str
    type: str = "string"  # string int size bool float rate duration enum uuid ref:<cls> list map
    required: bool = False
    help: str = ""
    values: tuple[str, ...] = ()  # enum members (also offered by completion)
    repeat: bool = False  # may be given several times (values kept in order)
    complete: str | None = None  # class whose names complete this argument
    bounds: tuple[int, int | None] | None = None  # the range of an int argument of a utility command
    short: str = ""  # a utility command's one-letter spelling of an option: "-f" for --format


@dataclass
class Command:
    name: str
    func: Callable | None
    help: str
    family: str = ""
    style: str = "xe"  # xe | ovs | util
    args: tuple[Arg, ...] = ()
    flags: tuple[str, ...] = ()  # e.g. ("--force", "--multiple")
    rw: bool = True
    # a command that reads unless given this flag (db-check --fix): its plain runs never open
    # the inventory for writing, so they never create or upgrade it
    writes_with: str | None = None
    creates: str | None = None  # class of the object it creates (accepts --id=@name)
    fields_of: str | None = None  # accepts any RW field of this class as key=value
    list_of: str | None = None  # a *-list: field filters, params=, --all
    selector: str | None = None  # "vm": vm= and/or field filters select the objects
    min_args: int = 0  # ovs style
    max_args: int | None = 0
    syntax: str = ""  # ovs style synopsis, or an override for xe style
    options: str = ""  # ovs style option string
    # xe-style arguments that may also be written GNU-style, `--limit 20` or `--limit=20`
    long_options: tuple[str, ...] = ()
    # called with the parsed segment before any transaction opens (ovs table/column names,
    # network.md §2.3): a chain that names a bad column fails before it touches the inventory
    precheck: Callable | None = None
    # other spellings of an argument: {"uuid": "vm"} (vm-start) or {"vm": "uuid"} (vm-destroy).
    # Filled in by register(): a command acting on one object of its class takes the class key
    # and uuid= for it; giving both fails DUPLICATE_PARAMETER.
    aliases: dict[str, str] = field(default_factory=dict)
    # the module of vmctl.commands declaring it ("vmpower"); register() takes its function's
    # when not given. The generated index (commands/_index.py) maps command names to it.
    module: str = ""
    # xe's parameters the command does not take because vmctl does not model what they change,
    # with the reason: UNKNOWN_PARAMETER says it, and `vmctl help` lists them
    refused: dict[str, str] = field(default_factory=dict)

    def writes(self, flags) -> bool:
        """Whether a run with these flags (names without dashes) may write."""
        if self.writes_with is not None:
            return self.writes_with[2:] in flags
        return self.rw

    @property
    def chainable(self) -> bool:
        """Utility commands run outside the chain's transaction (batch runs its own)."""
        return self.style != "util"

    @property
    def option_string(self) -> str:
        """What network.md §2.2 check 4 matches command options against."""
        if self.style == "ovs":
            return self.options
        parts = list(self.flags)
        if self.creates:
            parts.append("--id=")
        # a boolean argument may stand before the name as `--live` (= live=true), as a flag does
        parts += [f"--{a.name}" for a in self.args if a.type == "bool" and f"--{a.name}" not in self.flags]
        return ",".join(parts)

    def arg(self, name: str) -> Arg | None:
        for a in self.args:
            if a.name == name:
                return a
        return None

    @property
    def synopsis(self) -> str:
        if self.syntax:
            return self.syntax
        words = [self.name]
        for a in self.args:
            v = a.name.upper().replace("-", "_") if a.type != "bool" else "true|false"
            if a.type == "map":
                w = f"{a.name}:KEY=VALUE..."
            else:
                w = f"{a.name}={v}"
            for alias in (k for k, v in self.aliases.items() if v == a.name):
                w += f"|{alias}={v}"
            words.append(w if a.required else f"[{w}]")
        if self.fields_of:
            words.append("[FIELD=VALUE...]")
        if self.list_of:
            words.append("[FIELD=VALUE...] [params=FIELDS|all] [--all]")
        words.extend(f"[{f}]" for f in self.flags)
        return " ".join(words)


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, **kw) -> Callable:
    """Decorator registering a command function in the table."""

    def deco(fn: Callable) -> Callable:
        register(Command(name=name, func=fn, help=help, **kw))
        return fn

    return deco


def register(cmd: Command) -> None:
    if cmd.name in COMMANDS:
        raise ValueError(f"command {cmd.name} declared twice")
    if not cmd.module:
        cmd.module = getattr(cmd.func, "__module__", "").rpartition("vmctl.commands.")[2]
    if cmd.style == "xe":
        own = object_aliases(cmd) if not cmd.list_of else {}
        cmd.aliases = {**own, **uuid_aliases(cmd), **cmd.aliases}
        cmd.refused = {**XE_NOT_MODELLED.get(cmd.name, {}), **cmd.refused}
    COMMANDS[cmd.name] = cmd


_CROSS_POOL = "vmctl migrates within a pool (cross-pool migration is not modelled)"
# xe's parameters (cli_frontend.ml) that change what vmctl does not model: refused, with the
# reason (UNKNOWN_PARAMETER says it; `vmctl help COMMAND` lists them). Every other parameter xe
# gives these commands is taken (tests/test_xe_names.py).
XE_NOT_MODELLED: dict[str, dict[str, str]] = {
    "vm-migrate": {
        "remote-master": _CROSS_POOL,
        "remote-username": _CROSS_POOL,
        "remote-password": _CROSS_POOL,
        "remote-network": _CROSS_POOL,
        "copy": "vmctl migrates within a pool; vm-copy copies a VM",
        "image-format": "disk image formats are not modelled",
    },
    "vm-install": {"copy-bios-strings-from": "BIOS strings are not modelled"},
    "bond-create": {"properties": "bond properties (hashing, LACP timers) are not modelled"},
    "sr-create": {
        "sm-config": "storage-manager settings are not modelled (default-provisioning= sets thin or thick)"
    },
    "vdi-create": {
        "sm-config": "storage-manager settings are not modelled (provisioning= sets thin or thick)"
    },
    "vdi-copy": {"base-vdi-uuid": "incremental copies are not modelled (a copy is full)"},
    "vdi-clone": {"driver-params-": "storage driver parameters are not modelled"},
    "vdi-snapshot": {"driver-params-": "storage driver parameters are not modelled"},
    "vdi-pool-migrate": {"dest-img-format": "disk image formats are not modelled"},
}


def object_class(name: str) -> str | None:
    """The class a command is named after: `vm-group` for vm-group-destroy, `vm` for vm-start."""
    from vmctl.model import CLASSES

    hits = [c for c in CLASSES if name.startswith(c + "-")]
    return max(hits, key=len) if hits else None


def object_aliases(cmd: Command) -> dict[str, str]:
    """The other spelling of the argument naming the one object of its class a command acts on:
    the class key for `uuid=`, `uuid=` for the class key (cli.md §2: `vm-destroy vm=` and
    `vm-start uuid=` as well as `vm-destroy uuid=` and `vm-start vm=`)."""
    cls = object_class(cmd.name)
    if cls is None:
        return {}
    for a in cmd.args:
        if a.name in ("uuid", cls) and a.type in ("uuid", f"ref:{cls}"):
            other = cls if a.name == "uuid" else "uuid"
            return {} if cmd.arg(other) is not None else {other: a.name}
    return {}


def uuid_aliases(cmd: Command) -> dict[str, str]:
    """xe's `<class>-uuid=` for an argument `<class>=` naming an object of that class (model.md
    §0: `X-uuid=` takes a uuid, `X=` in its place a uuid or a name-label; either is accepted):
    pool-eject's `host=` is also `host-uuid=`, as xe spells it. The object of the command's own
    class is `uuid=` in xe (object_aliases)."""
    own = object_class(cmd.name)
    return {
        f"{a.name}-uuid": a.name
        for a in cmd.args
        if a.type == f"ref:{a.name}" and a.name != own and cmd.arg(f"{a.name}-uuid") is None
    }


# --- results ------------------------------------------------------------------------------------------
@dataclass
class Records:
    """Rows of one class; `fields` are the columns to show, in order."""

    cls: str
    rows: list[dict]
    fields: list[str]
    single: bool = False  # *-param-list: one object
    minimal: str | None = None  # the field --minimal prints when not the first (a plan's moved VMs)


@dataclass
class Value:
    """One bare value (a new uuid, a param-get value, a count)."""

    value: object
    type: str = "string"


@dataclass
class Text:
    """Literal text printed as is (ovs-style output, reports)."""

    text: str
    exit_code: int = 0  # db-check: violations are printed and the invocation exits 1


@dataclass
class Data:
    """Structured data (plans, reports): `data` for JSON/YAML; in the text formats the view
    named `view` (vmctl/cli/views.py) renders `source`, or `data` when there is none."""

    data: object
    view: str
    source: object = None
    records: Records | None = None
    # what --minimal prints when it is not the records' first field: these values, comma-separated
    minimal: list[str] | None = None
    # the text formats print these instead of a view: each heading, then its record as
    # *-param-list prints one (xe's vm-disk-list layout)
    blocks: list[tuple[str, Records]] | None = None


@dataclass
class Deferred:
    """A placeholder result: the command's work joined `run`, which settles it later in the
    same transaction (see `Ctx.deferred`). `index` is its place among the run's commands."""

    run: object
    index: int


@dataclass
class Ctx:
    """What a command function gets: the open transaction and its parsed arguments."""

    txn: object
    cmd: Command
    a: dict = field(default_factory=dict)  # parsed arguments (dash-case keys); repeats: lists
    raw: dict = field(default_factory=dict)  # the arguments as written
    raw_pairs: list = field(default_factory=list)  # (key, value) pairs as written, in order
    flags: set = field(default_factory=set)  # flag names without dashes: {"force", "multiple"}
    maps: dict = field(default_factory=dict)  # name -> {key: value} from name:key=value
    filters: list = field(default_factory=list)  # (field, key, value) for lists and selectors
    params: list | None = None  # params= of lists
    opts: dict = field(default_factory=dict)  # invocation options (dry_run, yes, quiet, explain, ...)
    fmt: str = "table"
    chained: bool = False  # in a chain or a batch with other commands
    confirmed: bool = False
    # A command run directly by the runner may defer its work to the end of a run of like
    # commands (it returns a Deferred); `deferred` is the run still open when it is called. The
    # run is an object with accepts(bound) -> bool (does the next command join it?) and
    # settle() -> list of the results of its commands, in order.
    may_defer: bool = False
    deferred: object | None = None
    # ovs style (network.md): the segment as getopt left it, and the switch the command works on
    options: dict = field(default_factory=dict)  # the command's options: {"--may-exist": None}
    args: list = field(default_factory=list)  # its positional arguments
    session: object = None  # the switch (vmctl.ovs.Session) once known; see vmctl.ovs.selection

    def flag(self, name: str) -> bool:
        return name in self.flags

    def get(self, name: str, default=None):
        return self.a.get(name, default)

    @property
    def force(self) -> bool:
        return "force" in self.flags

    def warn(self, text: str) -> None:
        if not self.opts.get("quiet"):
            self.txn.warn(text)  # type: ignore[attr-defined]

    def unless_missing(self, lookup):
        """The object a destroy or forget command acts on, from lookup(); with --if-exists a
        missing one (UUID_INVALID) gives None instead, which the command takes as success
        (model.md §0 idempotent forms)."""
        from vmctl.errors import VmctlError

        try:
            return lookup()
        except VmctlError as e:
            if self.flag("if-exists") and e.code == "UUID_INVALID":
                return None
            raise

    def confirm(self, what: list[str]) -> None:
        """model.md §0 Confirmation: --force / --yes (before the command or among its arguments)
        skip; no terminal or a chain fails."""
        from vmctl.errors import ConfirmationNeeded, VmctlError

        if self.force or self.opts.get("yes") or self.flag("yes") or self.confirmed:
            return
        if self.chained or not self.opts.get("interactive"):
            raise VmctlError("CONFIRMATION_REQUIRED", params=[("command", self.cmd.name)])
        raise ConfirmationNeeded(what)
