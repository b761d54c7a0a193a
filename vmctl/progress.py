"""A progress line on the terminal for the long work of real hosts (a disk copy): on stderr,
only when stderr is a terminal and the command is not quiet (-q); nothing otherwise, so that
scripts, pipes and logs never see it. One line, redrawn in place with `\\r`, erased at the end
so that what the command prints next (its result, or an error) starts on a clean line."""

from __future__ import annotations

import sys
import time

from vmctl.units import humanise_size

REDRAW_SECONDS = 0.2


class Bar:
    def __init__(self, label: str, stream=None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < REDRAW_SECONDS and done < total:
            return
        self._last = now
        pct = 100 * done // total if total else 100
        self.stream.write(
            f"\r\x1b[Kvmctl: {self.label}: {pct:3d}% {humanise_size(done)} of {humanise_size(total)}"
        )
        self.stream.flush()
        self._drawn = True

    def end(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False


def bar(label: str, quiet: bool) -> Bar | None:
    """A progress line for `label` when someone watches the terminal, else None."""
    try:
        watched = sys.stderr.isatty()
    except (AttributeError, ValueError):
        watched = False
    return Bar(label) if watched and not quiet else None
