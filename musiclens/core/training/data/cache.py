"""The on-disk feature cache: front-end outputs (and other arrays) as ``.npy`` files keyed by
the SHA-256 of the audio file(s) and the spec, under :func:`cache_dir`
(``$MUSICLENS_CACHE``, else ``$XDG_CACHE_HOME/musiclens``, else ``~/.cache/musiclens``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musiclens.core.errors import MusicLensError

CACHE_VERSION = "1"

__all__ = ["CACHE_VERSION", "FeatureCache", "cache_dir", "file_hash"]


def cache_dir() -> Path:
    """``$MUSICLENS_CACHE``, else ``$XDG_CACHE_HOME/musiclens``, else ``~/.cache/musiclens``."""
    env = os.environ.get("MUSICLENS_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "musiclens"


_HASHES: dict[tuple[str, int, int], str] = {}


def file_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's content (memoised per path, size and modification time)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


class FeatureCache:
    """Front-end outputs on disk: ``<root>/features/<key[:2]>/<key>.npy`` (no pickle).

    ``key`` is a SHA-256 of the audio content hash(es), the front end's spec and what was
    done to the audio (e.g. which stems were mixed). Files are written atomically; a damaged
    file is recomputed.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(content: Sequence[str], spec: dict[str, Any], what: str = "features") -> str:
        blob = json.dumps({"v": CACHE_VERSION, "content": list(content), "spec": spec, "what": what}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / "features" / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            arr: np.ndarray = np.load(p, mmap_mode="r", allow_pickle=False)
            return arr
        except (ValueError, OSError, EOFError):
            return None

    def put(self, key: str, array: np.ndarray) -> None:
        p = self.path(key)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)
            os.replace(tmp, p)
        except OSError as exc:  # a full or read-only disk must not stop training
            raise MusicLensError(
                f"cannot write the feature cache in {self.root}: {exc.strerror}; "
                "set MUSICLENS_CACHE to a writable folder or disable the cache"
            ) from None

    def get_or_compute(self, key: str, compute: Callable[..., np.ndarray]) -> np.ndarray:
        # compute() is called without arguments; `...` because callers pass lambdas with bound
        # defaults (`lambda mix=mix: ...`), which mypy cannot check against a `[]` signature
        arr = self.get(key)
        if arr is not None:
            self.hits += 1
            return arr
        self.misses += 1
        arr = np.asarray(compute())
        self.put(key, arr)
        return arr
