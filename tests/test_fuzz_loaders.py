"""Fuzzing in CI: a few hundred mutated files per loader (audio: info, load, load at 16 kHz
without mixing, stream; MIDI: read_midi and the note window), each in a forked child with
time and memory limits. Only MusicLensError with a one-line message in the user's terms, no
decoder chatter on stderr, no crash, no hang, no case over 1 GB; a stream that puts together
to what load reads. ``tests/fuzz_loaders.py`` is the longer run by hand (the mutators and
the harness are there)."""

from __future__ import annotations

import os
import sys

import pytest

import fuzz_loaders as fz

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or sys.platform != "linux", reason="the fuzz harness forks and reads /proc (Linux)"
)

CASES = {"audio": 200, "midi": 200}
LIMITS = fz.Limits(timeout_s=10.0, memory_mb=1024)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """The generated seed files, plus ../shared/data's small ones when it is present."""
    return fz.seeds_for(tmp_path_factory.mktemp("seeds"))


@pytest.mark.parametrize("kind", ["audio", "midi"])
def test_mutated_files_give_only_project_errors(kind, seeds, tmp_path):
    report = fz.fuzz(kind, seeds[kind], CASES[kind], seed=2026, limits=LIMITS, work=tmp_path)
    assert report.cases == CASES[kind]
    assert report.failed() == 0, fz.describe(kind, report, show=5)
    # the mutations reach the loaders' error paths and leave some files readable
    assert report.counts["error"] >= CASES[kind] // 10 and report.counts["ok"] >= CASES[kind] // 20, report.counts
    assert report.peak_rss_mb < LIMITS.memory_mb


def test_the_harness_sees_each_kind_of_failure(tmp_path, monkeypatch):
    """A loader that hangs, crashes, allocates gigabytes, raises a foreign exception, prints on
    stderr or leaks internals is caught as such (the fuzz test could not pass by not looking)."""
    import ctypes
    import time

    from musiclens.core import midi
    from musiclens.core.errors import MusicLensError

    path = tmp_path / "x.mid"
    path.write_bytes(b"MThd")
    limits = fz.Limits(timeout_s=1.0, memory_mb=200)
    base = fz.vm_size()
    behaviours = {
        "hang": lambda *a, **k: time.sleep(30),  # blocked: the wall-clock alarm
        "hang ": lambda *a, **k: sum(range(10**12)),  # busy: the CPU limit
        "crash": lambda *a, **k: ctypes.string_at(0),
        "memory": lambda *a, **k: bytearray(400 * 2**20),
        "foreign": lambda *a, **k: [][1],
        "chatter": lambda *a, **k: (os.write(2, b"Note: decoder noise\n"), (_ for _ in ()).throw(MusicLensError("x"))),
        "internal": lambda *a, **k: (_ for _ in ()).throw(MusicLensError("bad file: ValueError: max() arg")),
    }
    for outcome, fn in behaviours.items():
        monkeypatch.setattr(midi, "read_midi", fn)
        result, _, _ = fz.run_case("midi", path, limits, base)
        assert result["outcome"] == outcome.strip(), (outcome, result)
