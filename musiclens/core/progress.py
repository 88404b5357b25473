"""ONE progress type for every long computation of the core (no torch, no Qt).

Every generator of :mod:`musiclens.core.analyses` yields :class:`Progress` steps and
*returns* its result (``StopIteration.value``; :func:`musiclens.core.analyses.run` drives
one to its end). A caller cancels a generator by no longer asking for steps and closing it
(``gen.close()``); the generators that can end early *with* a result (a dream stopped
half-way, a training run that keeps its best epoch) also take a ``stop``/``cancel``
callable. The trainers' events (:class:`musiclens.core.training.events.Progress`,
:class:`~musiclens.core.training.events.PrepareProgress`) extend this class, so they are
progress steps too. The window's ``JobProgress`` and the CLI's stderr printer are display
types built from these.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

__all__ = ["Cancel", "Progress", "is_cancelled", "run", "scaled"]

T = TypeVar("T")


@dataclass(kw_only=True)
class Progress:
    """One step of a long computation.

    fraction : 0..1 of the whole job done, or None when unknown.
    message : one line saying what is being done (the status bar's, the CLI's stderr).
    payload : something to preview (e.g. a dream's (F, T) display so far, a training
        epoch's curves), or None.
    """

    fraction: float | None = None
    message: str = ""
    payload: Any = None

    def line(self) -> str:
        return self.message


def run(steps: Generator[Progress, None, T], callback: Callable[[Progress], Any] | None = None) -> T:
    """Drive a generator of :class:`Progress` to its end, calling ``callback`` on every step;
    returns the generator's result. If ``callback`` raises (e.g. to cancel), the generator is closed."""
    try:
        while True:
            step = next(steps)
            if callback is not None:
                callback(step)
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        steps.close()


def scaled(steps: Generator[Progress, None, T], start: float, end: float) -> Generator[Progress, None, T]:
    """``steps`` as one part of a longer job: each step's fraction f (0..1) becomes
    ``start + f × (end - start)``; returns ``steps``' result (closing this closes ``steps``)."""
    try:
        while True:
            step = next(steps)
            if step.fraction is not None:
                step = replace(step, fraction=start + step.fraction * (end - start))
            yield step
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        steps.close()


class _Flag(Protocol):
    def is_set(self) -> bool: ...


#: how a caller asks a long computation to stop: a ``threading.Event``, a callable that
#: turns True, or None (never)
Cancel = _Flag | Callable[[], bool] | None


def is_cancelled(cancel: Cancel) -> bool:
    """Whether ``cancel`` (see :data:`Cancel`) says stop."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())
