"""A progress line on the terminal for the long work of real hosts (a disk copy): on stderr,
only when stderr is a terminal and the command is not quiet (-q); nothing otherwise, so that
scripts, pipes and logs never see it. One line, redrawn in place with `\\r`, erased at the end
so that what the command prints next (its result, or an error) starts on a clean line."""

from __future__ import annotations

import sys
import threading
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


class Shared:
    """One progress line for several jobs running at once (the migrations of a wave), drawn from
    their sums: each job reports through a `part`, and the line is erased once every part ended."""

    def __init__(self, label: str, stream=None) -> None:
        self._bar = Bar(label, stream)
        self._figures: dict[int, tuple[int, int]] = {}
        self._running: set[int] = set()
        self._lock = threading.Lock()  # the parts report from their own threads

    def part(self) -> Part:
        with self._lock:
            key = len(self._figures)
            self._figures[key] = (0, 0)
            self._running.add(key)
        return Part(self, key)

    def _report(self, key: int, done: int, total: int) -> None:
        with self._lock:
            self._figures[key] = (done, total)
            self._bar(sum(d for d, _ in self._figures.values()), sum(t for _, t in self._figures.values()))

    def _end(self, key: int) -> None:
        with self._lock:
            self._running.discard(key)
            if not self._running:
                self._bar.end()


class Part:
    """One job's share of a Shared line; called and ended as a Bar is."""

    def __init__(self, shared: Shared, key: int) -> None:
        self._shared, self._key = shared, key

    def __call__(self, done: int, total: int) -> None:
        self._shared._report(self._key, done, total)

    def end(self) -> None:
        self._shared._end(self._key)


def shared(label: str, quiet: bool) -> Shared | None:
    """A progress line for jobs running at once when someone watches the terminal, else None."""
    return Shared(label) if bar(label, quiet) is not None else None
