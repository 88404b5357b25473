"""The one output rule of every command that writes a file (``-o``): missing parent
folders are created; what cannot be written is a one-line error (exit 2)."""

from __future__ import annotations

import os
from pathlib import Path


def prepare_output(path: str | os.PathLike[str]) -> Path:
    """Make ``path``'s parent folders; return ``path`` as a :class:`Path`.

    Raises :class:`~musiclens.core.errors.ParameterError` when ``path`` is a folder or its
    folder cannot be made (a file in the way, no permission)."""
    from musiclens.core.errors import ParameterError

    out = Path(path)
    if out.is_dir():
        raise ParameterError(f"{out} is a folder; give the name of the file to write")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in [out.parent, *out.parent.parents] if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker else (exc.strerror or str(exc))
        raise ParameterError(f"cannot write {out}: {why}") from None
    if not os.access(out.parent, os.W_OK):
        raise ParameterError(f"cannot write {out}: no permission to write in {out.parent}")
    return out
