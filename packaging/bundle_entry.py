"""Entry point of the stand-alone MusicLens bundle (PyInstaller runs this as ``musiclens``).

Started without arguments (a double-click) it opens the window with the bundled demo, like
the ``musiclens`` command; ``musiclens gui FILE`` opens FILE (what the desktop entry runs).
"""

import multiprocessing
import os
import sys
from pathlib import Path


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "musiclens"


if __name__ == "__main__":
    multiprocessing.freeze_support()
    # numba (musiclens.core.mel_power) caches compiled code next to the sources by default; a bundle may sit
    # in a read-only folder, so keep that cache in the user's cache folder instead.
    os.environ.setdefault("NUMBA_CACHE_DIR", str(_user_cache() / "numba"))
    from musiclens.cli import main

    sys.exit(main())
