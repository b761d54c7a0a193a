"""Completion as a person gets it: a real interactive bash, zsh and fish on a pseudo-terminal, the
generated script installed as the README says, an inventory with known objects, TAB pressed.

What TAB left on the line is read back by typing on (`X`, so a space the shell added shows) and
pressing Enter: the `vmctl` first on PATH here is a stand-in that runs the real `vmctl __complete`
for the shells and, run as a command, prints the words it was given, `[vm-start][vm=my vm][X]`.
So one expectation holds for every shell, whatever quoting it chose (`vm=my\\ vm`, `'my vm'`).

Why each case is here: right after `=` bash's COMP_WORDS holds the `=` itself while readline
replaces only what follows it (`vm==web1` once); zsh runs an autoloaded `_vmctl` file as the
function's body (the first TAB of a session completed nothing); zsh's `$BUFFER` holds the whole
line (`true && vmctl vm-st` completed nothing) and is unquoted during completion (`vm='my v`
lost its words); fish ships completions for another vmctl (OpenBSD's) that mixed in when the
script was sourced; `-f <TAB>` offered command names and `--host h1 add-port` took `h1` for the
command."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import sys
import termios
import time
from pathlib import Path

import pytest
from cli_helpers import cli

ROOT = Path(__file__).resolve().parent.parent
SHELLS = ("bash", "zsh", "fish")


@pytest.fixture(scope="module")
def inventory(tmp_path_factory) -> Path:
    """Names with spaces and shell-special characters, two hosts, a pool, two SRs, bridges on h1."""
    db = tmp_path_factory.mktemp("completion") / "inv.db"
    chain = [
        ["pool-create", "name-label=p1"],
        ["host-add", "name-label=h1", "address=10.0.0.1", "cpu-count=8", "memory-total=64GiB", "pool=p1"],
        ["host-add", "name-label=rack 7", "address=10.0.0.2", "cpu-count=8", "memory-total=64GiB", "pool=p1"],
        ["vm-create", "name-label=web1"],
        ["vm-create", "name-label=my vm"],
        ["vm-create", "name-label=it's"],
        ["vm-create", "name-label=a&b$c"],
        ["sr-create", "name-label=nfs store", "type=nfs", "physical-size=100GiB"],
        ["sr-create", "name-label=local1", "type=ext", "physical-size=10GiB", "host=h1"],
    ]
    words = [w for cmd in chain for w in ["--", *cmd]][1:]
    assert cli(db, *words).returncode == 0
    assert cli(db, "--host=h1", "add-br", "br-int").returncode == 0
    return db


class Shell:
    """One interactive shell on a pseudo-terminal, with vmctl's completion installed."""

    def __init__(self, name: str, home: Path, db: Path, install: str):
        self.name = name
        self.log = home / "completions.log"  # one line per completion request answered
        self.log.touch()
        bindir = home / "bin"
        bindir.mkdir()
        stand_in = bindir / "vmctl"
        stand_in.write_text(
            "#!/bin/sh\n"
            'case "$1" in __complete|completion)\n'
            f'    "{sys.executable}" -m vmctl "$@"; rc=$?; echo "$1" >> "{self.log}"; exit $rc;;\n'
            "esac\n"
            "printf '[%s]' \"$@\"; echo '<end>'\n"
        )
        stand_in.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VMCTL_", "XDG_", "ZDOTDIR"))}
        env.update(
            HOME=str(home),
            PATH=f"{bindir}:{env.get('PATH', '')}",
            PYTHONPATH=str(ROOT),
            VMCTL_DB=str(db),
            VMCTL_DAEMON="off",  # `vmctl completion SHELL` would start a manager: none is left running
            TERM="xterm",
            INPUTRC="/dev/null",
        )
        for editor in ("EDITOR", "VISUAL"):  # zsh's key bindings: emacs unless these name vi
            env.pop(editor, None)
        argv = self._configure(home, env, install)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(home)
            os.execvpe(name, argv, env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.write("echo rea''dy\r")
        self.read_until(b"ready")

    def _configure(self, home: Path, env: dict, install: str) -> list[str]:
        """The shell's start-up file, installing completion as the README says (`install`:
        "file" puts the committed script where the shell looks for it, "source" runs
        `vmctl completion SHELL` at start-up)."""
        script = (
            ROOT / "completions" / {"bash": "vmctl.bash", "zsh": "_vmctl", "fish": "vmctl.fish"}[self.name]
        )
        if self.name == "bash":
            rc = home / ".bashrc"
            rc.write_text(
                f"PS1='$ '\nsource {script}\n"
                if install == "file"
                else "PS1='$ '\nsource <(vmctl completion bash)\n"
            )
            return ["bash", "--noprofile", "--rcfile", str(rc), "-i"]
        if self.name == "zsh":
            env["ZDOTDIR"] = str(home)
            lines = ["PS1='$ '"]
            if install == "file":  # first in $fpath: zsh also ships a _vmctl, for OpenBSD's vmctl
                lines.append(f"fpath=({script.parent} $fpath)")
            lines.append("autoload -Uz compinit && compinit -D")
            if install == "source":
                lines.append("source <(vmctl completion zsh)")
            (home / ".zshrc").write_text("\n".join(lines) + "\n")
            return ["zsh", "--no-globalrcs", "-i"]
        env["XDG_CONFIG_HOME"] = str(home / "config")
        env["XDG_DATA_HOME"] = str(home / "data")
        config = home / "config" / "fish"
        (config / "completions").mkdir(parents=True)
        lines = [
            "function fish_prompt; echo -n '$ '; end",
            "set -g fish_greeting",
            "set -g fish_autosuggestion_enabled 0",
        ]
        if install == "file":
            shutil.copy(script, config / "completions" / "vmctl.fish")
        else:
            lines.append("vmctl completion fish | source")
        (config / "config.fish").write_text("\n".join(lines) + "\n")
        return ["fish", "-i"]

    def write(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def read_until(self, marker: bytes, timeout: float = 15.0) -> bytes:
        out = b""
        end = time.monotonic() + timeout
        while marker not in out and time.monotonic() < end:
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    out += os.read(self.fd, 65536)
                except OSError:
                    break
        assert marker in out, f"{self.name}: no {marker!r} in {out.decode(errors='replace')!r}"
        return out

    def _answered(self) -> int:
        return len(self.log.read_text().splitlines())

    def tab(self, typed: str, tabs: int = 1, listing: bool = False) -> tuple[str, str]:
        """Type `typed`, press TAB, then go on typing `X` and run the line: the words the line
        holds (`[vm-start][vm=web1][X]`) and, with `listing`, what the screen showed after TAB."""
        before = self._answered()
        self.write(typed + "\t" * tabs)
        end = time.monotonic() + 15
        while self._answered() < before + tabs and time.monotonic() < end:
            time.sleep(0.02)
        screen = b""
        while listing and select.select([self.fd], [], [], 0.15)[0]:  # the listing, until the screen is still
            screen += os.read(self.fd, 65536)
        self.write("X\r")
        try:
            out = self.read_until(b"]<end>", timeout=10).decode(errors="replace")
        except AssertionError:
            self.write("\x03")  # a line left open (a quote): give the prompt back to the next case
            raise
        words = re.findall(r"((?:\[[^\r\n]*?\])+)<end>", _plain(out))
        return words[-1], _plain(screen.decode(errors="replace"))

    def close(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)


def _plain(text: str) -> str:
    """Terminal output without its control sequences (cursor moves, colours) and carriage returns."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>]|\r", "", text)


def _skip_unless_installed(name: str) -> None:
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed (Debian: apt-get install {name})")


@pytest.fixture(scope="module", params=SHELLS)
def shell(request, inventory, tmp_path_factory):
    _skip_unless_installed(request.param)
    sh = Shell(request.param, tmp_path_factory.mktemp(request.param), inventory, "file")
    yield sh
    sh.close()


# (typed before TAB, the words the line then holds): the same for every shell; three TABs a test
CASES = {
    "command and parameter names": [
        ("vmctl vm-st", "[vm-start][X]"),
        ("vmctl vm-start vm", "[vm-start][vm=X]"),  # a key: the value follows, no space
        ("vmctl vm-start v", "[vm-start][vX]"),  # several keys: no guess
    ],
    "values after key=": [
        ("vmctl vm-start vm=w", "[vm-start][vm=web1][X]"),  # the = is not doubled, vm= kept
        ("vmctl vm-start vm=", "[vm-start][vm=X]"),
        ("vmctl vm-list power-state=ha", "[vm-list][power-state=halted][X]"),
    ],
    "hosts, SRs and pools by name": [
        ("vmctl vm-start vm=web1 on=r", "[vm-start][vm=web1][on=rack 7][X]"),
        ("vmctl sr-destroy sr=n", "[sr-destroy][sr=nfs store][X]"),
        ("vmctl pool-param-list uuid=", "[pool-param-list][uuid=p1][X]"),
    ],
    "names with spaces and special characters": [
        ("vmctl vm-start vm=my", "[vm-start][vm=my vm][X]"),
        ("vmctl vm-start vm=it", "[vm-start][vm=it's][X]"),
        ("vmctl vm-start vm=a", "[vm-start][vm=a&b$c][X]"),
    ],
    "inside quotes": [
        ("vmctl vm-start vm='my v", "[vm-start][vm=my vm][X]"),
        ('vmctl vm-start "vm=it', "[vm-start][vm=it's][X]"),
        ("vmctl vm-start vm='a", "[vm-start][vm=a&b$c][X]"),
    ],
    "--host values": [
        ("vmctl --host=h", "[--host=h1][X]"),
        ("vmctl --host r", "[--host][rack 7][X]"),
        ("vmctl --ho=", "[--ho=X]"),  # an abbreviation, as getopt_long takes it; two hosts
    ],
    "format values": [
        ("vmctl --format=j", "[--format=json][X]"),
        ("vmctl -f y", "[-f][yaml][X]"),
        ("vmctl vm-list -f c", "[vm-list][-f][csv][X]"),
    ],
    "ovs-style commands and chains": [
        ("vmctl --host=h1 add-port b", "[--host=h1][add-port][br-int][X]"),
        ("vmctl --host 'rack 7' add-port x", "[--host][rack 7][add-port][xenbr0][X]"),
        ("true && vmctl sr-create pool=p1 -- vm-sh", "[sr-create][pool=p1][--][vm-shutdown][X]"),
    ],
}


@pytest.mark.parametrize("group", CASES)
def test_tab_completes_in_a_real_shell(shell, group):
    got = [(typed, shell.tab(typed)[0]) for typed, _ in CASES[group]]
    assert got == CASES[group], shell.name


# (typed before TAB, what the listing shows, what it must not show)
LISTINGS = [
    ("vmctl vm-start vm=", ["web1", "it"], []),
    ("vmctl -f ", ["json", "yaml", "csv"], ["vm-start"]),
    ("vmctl --host=h1 add-port ", ["br-int", "xenbr0"], ["console", "create"]),  # not OpenBSD's vmctl
]


@pytest.mark.parametrize("typed, shown, hidden", LISTINGS)
def test_ambiguous_tab_lists_the_candidates(shell, typed, shown, hidden):
    tabs = 2 if shell.name == "bash" else 1  # bash lists on the second TAB
    _, screen = shell.tab(typed, tabs, listing=True)
    assert all(s in screen for s in shown) and not any(h in screen for h in hidden), (shell.name, screen)
    if typed.endswith("=") and shell.name != "fish":  # the values alone, the key kept on the line
        assert "vm=web1" not in screen, (shell.name, screen)


@pytest.mark.parametrize("install", ["file", "source"])
@pytest.mark.parametrize("name", SHELLS)
def test_first_tab_of_a_session(name, install, inventory, tmp_path):
    """Either way the README installs it, completion works from the first TAB of a new shell."""
    _skip_unless_installed(name)
    sh = Shell(name, tmp_path, inventory, install)
    try:
        assert sh.tab("vmctl vm-st")[0] == "[vm-start][X]"
    finally:
        sh.close()
