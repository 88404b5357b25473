"""The one exception type users can cause (librosa's ``ParameterError`` style), and the check
every file reader makes before opening a file (:func:`regular_file`)."""

from __future__ import annotations

import os
import stat


class MusicLensError(Exception):
    """A problem with the user's input or settings.

    The message says what was wrong and what is allowed; the CLI prints it as one
    line and exits non-zero, the GUI shows it in the status bar or a dialog.
    """


class ParameterError(MusicLensError, ValueError):
    """A parameter value is outside what the function accepts."""


class AudioFileError(MusicLensError):
    """An audio file cannot be read (missing, empty, truncated, not audio, too long)."""


def regular_file(path: str | os.PathLike[str], what: str, error: type[MusicLensError] = MusicLensError) -> int:
    """Check with ``os.stat`` (nothing is opened) that ``path`` is a regular, non-empty file ->
    its size in bytes; else raise ``error`` saying what it is (missing, a folder, a named pipe
    or a device, which would block a reader or never end, empty). ``what``: e.g. "audio file"."""
    a = "an" if what[:1].lower() in "aeiou" else "a"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as exc:
        raise error(f"cannot open {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path} is a folder, not {a} {what}")
    if not stat.S_ISREG(st.st_mode):
        kind = "a named pipe" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
        raise error(f"{path} is {kind}, not a regular file; give {a} {what}")
    if st.st_size == 0:
        raise error(f"{path} is empty (0 bytes)")
    return int(st.st_size)
