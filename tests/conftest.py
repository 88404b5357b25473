"""Shared fixtures. Tests that need ../shared/data use ``shared_data`` and skip without it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$MUSICLENS_SHARED_DATA`` or ``<repo>/../shared/data``, if it exists."""
    env = os.environ.get("MUSICLENS_SHARED_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder; the test is skipped with a reason when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("real-data tier: ../shared/data is not present on this machine")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def tone(freqs=(440.0,), *, sr: int = 22050, seconds: float = 1.0, amp: float = 0.3) -> np.ndarray:
    """A sum of sines, float32 (samples,)."""
    t = np.arange(int(sr * seconds)) / sr
    return (amp * sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)).astype(np.float32)


@pytest.fixture
def run_cli(capsys):
    """Run ``musiclens ARGS…`` in this process; returns (exit status, stdout, stderr)."""
    from musiclens import cli

    def run(*argv) -> tuple[int, str, str]:
        status = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run
