"""The man page and the completion scripts are generated from the command table: the committed
files must equal what it generates now, pass their linters, and complete as a user expects."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from vmctl.cli import gendocs

ROOT = gendocs.ROOT


@pytest.mark.parametrize("rel", sorted(gendocs.TARGETS))
def test_generated_files_are_current(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        committed = f.read()
    assert committed == gendocs.TARGETS[rel](), f"{rel} is stale: run python -m vmctl.cli.gendocs"


def test_completion_command_prints_the_committed_scripts(inv):
    for shell, name in (("bash", "vmctl.bash"), ("zsh", "_vmctl"), ("fish", "vmctl.fish")):
        with open(os.path.join(ROOT, "completions", name), encoding="utf-8") as f:
            assert inv.ok("completion", shell) == f.read()
    inv.fail("completion", "tcsh", code="INVALID_VALUE")


@pytest.mark.skipif(
    shutil.which("mandoc") is None, reason="mandoc is not installed (Debian: apt-get install mandoc)"
)
def test_man_page_lints_clean():
    p = subprocess.run(
        ["mandoc", "-T", "lint", os.path.join(ROOT, "man", "vmctl.1")], capture_output=True, text=True
    )
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", p.stdout + p.stderr


def test_man_page_documents_every_command():
    from vmctl.commands import load

    text = gendocs.manpage()
    for name in load():
        assert f"\\fB{name.replace('-', chr(92) + '-')}\\fR" in text, name


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_script_syntax():
    subprocess.run(["zsh", "-n", os.path.join(ROOT, "completions", "_vmctl")], check=True)


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_script_syntax():
    subprocess.run(["fish", "-n", os.path.join(ROOT, "completions", "vmctl.fish")], check=True)


BASH_DRIVER = r"""
vmctl() { "$PYTHON" -m vmctl "$@"; }
source "$SCRIPT"
t() { COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ));
      COMPREPLY=(); _vmctl; printf '%s|' "${COMPREPLY[@]}"; echo; }
t "vmctl vm-sta" vmctl vm-sta
t "vmctl vm-start " vmctl vm-start ""
t "vmctl vm-start vm=" vmctl vm-start vm =
t "vmctl vm-start vm=my" vmctl vm-start vm = my
t "vmctl vm-start vm=web1 on=" vmctl vm-start vm = web1 on =
t "vmctl add-port " vmctl add-port ""
t "vmctl vm-list power-state=r" vmctl vm-list power-state = r
t "vmctl sr-create type=" vmctl sr-create type =
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_through_comp_words(small):
    small.ok(
        "host-add", "name-label=tiny host", "address=10.0.0.9", "cpu-count=1", "memory-total=1GiB", "pool=p1"
    )
    small.ok("--host=h1", "vm-create", "name-label=my vm", "memory=4GiB", "--", "add-br", "br-int")
    env = small.env(
        {
            "PYTHON": sys.executable,
            "SCRIPT": os.path.join(ROOT, "completions", "vmctl.bash"),
            "VMCTL_HOST": "h1",
        }
    )
    out = subprocess.run(
        ["bash", "-c", BASH_DRIVER], capture_output=True, text=True, env=env, check=True
    ).stdout
    lines = [ln.rstrip("|").split("|") for ln in out.splitlines()]
    assert lines[0] == ["vm-start"]
    assert lines[1][:2] == ["vm=", "on="] and "--force" in lines[1]
    assert lines[2] == ["db1", "my\\ vm", "web1"]  # names, with the space escaped for bash (the = stays)
    assert lines[3] == ["my\\ vm"]
    assert lines[4] == ["h1", "h2"]  # the 1 GiB host cannot take web1: left out
    assert lines[5] == ["br-int", "xenbr0"]
    assert lines[6] == ["running"]
    assert "lvm" in lines[7] and "nfs" in lines[7]


def test_completion_stays_light(small):
    code = (
        "import sys; from vmctl.__main__ import main; main(['__complete', 'bash', 'vmctl vm-start vm=', '=']);"
        "print(sorted(m for m in ('typer', 'rich', 'yaml', 'sqlalchemy', 'numpy') if m in sys.modules),"
        " file=sys.stderr)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=small.env())
    assert p.stderr.strip() == "[]" and "web1" in p.stdout.split()


@pytest.mark.parametrize(
    "words, cur, expected",
    [
        (["vmctl", "--db", "{db}", "vm-start"], "vm=w", ["vm=web1"]),  # --db as its own word
        (["vmctl", "-t", "5", "vm-list"], "power-state=ha", ["power-state=halted"]),  # not the command
        (["vmctl", "-qf"], "y", ["yaml"]),  # the value of the last option of a cluster
        (["vmctl", "--form"], "c", ["csv"]),  # an abbreviation, as getopt_long takes it
        (["vmctl", "--fo"], "co", ["completion"]),  # ambiguous (--format, --force): not an option value
        (["vmctl", "vm-list", "--format"], "t", ["table", "tsv"]),  # among an xe command's arguments
    ],
)
def test_completion_reads_global_options_as_getopt_long_does(small, monkeypatch, words, cur, expected):
    from vmctl.cli import completion

    monkeypatch.delenv("VMCTL_DB", raising=False)  # the inventory is the one --db names
    words = [w.replace("{db}", str(small.db)) for w in words]
    if "--db" not in words:
        words.insert(1, f"--db={small.db}")
    assert completion.candidates(words, cur) == expected


@pytest.mark.parametrize(
    "words, cur, expected",
    [
        (["vmctl", "lab"], "", ["up", "status", "down"]),  # a utility command's action
        (["vmctl", "lab"], "s", ["status"]),
        (["vmctl", "lab", "up"], "--", ["--hosts", "--dir", "--format"]),  # its GNU-style options
        (["vmctl", "lab", "up"], "", []),  # one action only
        (["vmctl", "completion"], "f", ["fish"]),
        (["vmctl", "demo"], "--s", ["--seed"]),
    ],
)
def test_completion_of_utility_commands(words, cur, expected):
    from vmctl.cli import completion

    assert completion.candidates(words, cur) == expected


@pytest.mark.parametrize(
    "line, expected",
    [
        ("vmctl vm-start vm='my v", (["vmctl", "vm-start"], "vm=my v")),
        ('vmctl vm-start "vm=it', (["vmctl", "vm-start"], "vm=it")),
        ("vmctl vm-start vm=my\\ v", (["vmctl", "vm-start"], "vm=my v")),
        ("vmctl 'my vm' ", (["vmctl", "my vm"], "")),
    ],
)
def test_completion_reads_an_open_quote_as_the_shell_does(line, expected):
    from vmctl.cli import completion

    assert completion.split_line(line) == expected
