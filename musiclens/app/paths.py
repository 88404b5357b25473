"""Where the window keeps the user's files: one data folder, ``<AppDataLocation>/MusicLens``
(Linux: ``$XDG_DATA_HOME/MusicLens``, by default ``~/.local/share/MusicLens``) holding the
models trained in the window (``models/``), the study reports (``studies/``) and the piano
roll's crash-recovery file. Settings stay where they were (``QSettings("MusicLens",
"MusicLens")``, e.g. ``~/.config/MusicLens/MusicLens.conf``).

Up to session 5 the window named both its organisation and its application "MusicLens", so
Qt put the data one folder deeper, in ``…/MusicLens/MusicLens``. :func:`migrate_data_home`
moves what is there up once, at start, and rewrites the settings that point into it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QSettings, QStandardPaths

APP_NAME = "MusicLens"


def _app_data(organisation: str) -> Path:
    """Qt's AppDataLocation for the application ``APP_NAME`` of ``organisation``
    (``<base>/<organisation>/<application>``), whatever names this process set."""
    names = QCoreApplication.organizationName(), QCoreApplication.applicationName()
    QCoreApplication.setOrganizationName(organisation)
    QCoreApplication.setApplicationName(APP_NAME)
    try:
        where = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    finally:
        QCoreApplication.setOrganizationName(names[0])
        QCoreApplication.setApplicationName(names[1])
    return Path(where) if where else Path.home() / ".musiclens"


def data_home() -> Path:
    """The user's MusicLens data folder (see the module's docstring); not created here."""
    return _app_data("")


def old_data_home() -> Path:
    """Where the data went before: ``data_home() / "MusicLens"`` (organisation and application
    both named "MusicLens")."""
    return _app_data(APP_NAME)


def _moved(value: object, moves: dict[str, str]) -> object:
    """A setting's value with each path under a moved entry pointing to its new place."""
    if isinstance(value, str):
        for old, new in moves.items():
            if value == old or value.startswith((old + "/", old + os.sep)):
                return new + value[len(old) :]
        return value
    if isinstance(value, list):
        return [_moved(v, moves) for v in value]
    return value


def _move_into(old: Path, new: Path, moves: dict[str, str], stayed: list[str], top: Path) -> None:
    """Move each entry of folder ``old`` into folder ``new``; a folder both hold is merged the
    same way, a file both hold stays (its path relative to ``top`` goes to ``stayed``)."""
    for entry in sorted(old.iterdir()):
        target = new / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir() and not target.is_symlink():
            _move_into(entry, target, moves, stayed, top)
            with contextlib.suppress(OSError):
                entry.rmdir()  # only when emptied
            continue
        if target.exists() or target.is_symlink():
            stayed.append(str(entry.relative_to(top)))
            continue
        try:
            entry.rename(target)
        except OSError:
            stayed.append(str(entry.relative_to(top)))
            continue
        moves[str(entry)] = str(target)


def migrate_data_home(settings: QSettings, old: Path | None = None, new: Path | None = None) -> str | None:
    """Move the old data folder's files and folders (``old``: :func:`old_data_home`) into
    ``new`` (:func:`data_home`), merging folders both hold (e.g. ``models/``), and point the
    settings at the moved paths (recent files, model folders, the last study report…). A file
    ``new`` already holds under the same name stays where it is, and the settings keep
    pointing at it, so it still opens. The old folder is removed once empty.

    Returns one line saying what was moved (and what stayed), or None when there was no old folder.
    """
    old = old_data_home() if old is None else old
    new = data_home() if new is None else new
    if not old.is_dir() or old.resolve() == new.resolve():
        return None
    moves: dict[str, str] = {}
    stayed: list[str] = []
    _move_into(old, new, moves, stayed, old)
    for key in settings.allKeys():
        value = settings.value(key)
        moved = _moved(value, moves)
        if moved != value:
            settings.setValue(key, moved)
    settings.sync()
    with contextlib.suppress(OSError):
        old.rmdir()  # only when empty
    if not moves and not stayed:
        return None
    line = f"moved your MusicLens data from {old} to {new}" if moves else f"your MusicLens data is now in {new}"
    if stayed:
        line += f"; left in {old} (the new folder has the same names): {', '.join(stayed)}"
    return line
