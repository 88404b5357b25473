"""Progress of the long commands on stderr, one shared format::

    sanity: 3/20 steps, grad, 12 s elapsed, ETA 40 s

The first update and the last (done == total) are always printed; the others at most
every ``every`` seconds. ``quiet=True`` (the commands' ``--quiet``) prints nothing. Stdout
is never touched, so ``--json`` output stays one clean document.
"""

from __future__ import annotations

import argparse
import sys
import time


def add_quiet_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


class Progress:
    """``update(done)`` prints ``"<what>: done/total <unit>[, detail], N s elapsed, ETA M s"``."""

    def __init__(
        self, what: str, unit: str, *, total: int | None = None, quiet: bool = False, every: float = 2.0
    ) -> None:
        self.what, self.unit, self.total, self.quiet, self.every = what, unit, total, quiet, every
        self.start = time.monotonic()
        self._last_print: float | None = None
        self._last_done = 0

    def update(
        self,
        done: int,
        *,
        total: int | None = None,
        detail: str = "",
        unit: str | None = None,
        force: bool = False,
        finished: bool = False,
    ) -> None:
        """``finished``: the last update of a job that stopped before ``total`` (printed, no ETA)."""
        if total is not None:
            self.total = total
        if unit is not None:
            self.unit = unit
        now = time.monotonic()
        finished = finished or (self.total is not None and done >= self.total)
        due = self._last_print is None or now - self._last_print >= self.every
        if self.quiet or not (force or finished or due):
            return
        self._last_print = now
        elapsed = now - self.start
        parts = [f"{self.what}: {done}/{self.total if self.total is not None else '?'} {self.unit}"]
        if detail:
            parts.append(detail)
        parts.append(f"{elapsed:.0f} s elapsed")
        if not finished and self.total and done > 0:
            parts.append(f"ETA {elapsed / done * (self.total - done):.0f} s")
        print(", ".join(parts), file=sys.stderr, flush=True)
