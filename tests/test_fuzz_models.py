"""Fuzzing model folders in CI (issue 18): mutated copies of the bundled models and of a tiny
user model (model.json fields, the file itself, the weights, pickles posing as weights, special
files), each loaded in a forked child with time and memory limits. Only MusicLensError with a
one-line message, no crash, no hang, no case over 1 GB, no pickle ever runs.
``tests/fuzz_models.py --n 500`` is the longer run by hand (the mutators and the harness)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

import fuzz_models as fm

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or sys.platform != "linux", reason="the fuzz harness forks and reads /proc (Linux)"
)

CASES = 150
LIMITS = fm.Limits(timeout_s=30.0, memory_mb=1024)


def test_mutated_model_folders_give_only_project_errors(tmp_path):
    report = fm.fuzz(CASES, seed=2026, limits=LIMITS, work=tmp_path)
    assert report.cases == CASES
    assert fm.failed(report) == 0, fm.describe("model folders", report, show=5)
    # the mutations reach the checks and leave some folders loadable
    assert report.counts["error"] >= CASES // 3 and report.counts["ok"] >= CASES // 20, report.counts
    assert report.peak_rss_mb < LIMITS.memory_mb


def test_the_mutators_change_what_they_say(tmp_path):
    """Each mutator kind really alters the folder (a fuzz run could not pass by mutating nothing)."""
    seeds = fm.seed_folders(tmp_path / "seeds")
    kinds: dict[str, int] = {}
    for i in range(120):
        rng = np.random.default_rng([7, i])
        src = seeds[i % len(seeds)]
        case = tmp_path / f"c{i}"
        import shutil

        shutil.copytree(src, case)
        what = fm.mutate_folder(case, rng)
        kind = what.split(":")[0].split(" ")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
        before = {p.name: (p.read_bytes() if p.is_file() and not p.is_symlink() else None) for p in src.iterdir()}
        after = {p.name: (p.read_bytes() if p.is_file() and not p.is_symlink() else None) for p in case.iterdir()}
        assert before != after, what
        shutil.rmtree(case, ignore_errors=True)
    assert {"model.json", "weights"} <= set(kinds), kinds


def test_the_harness_sees_foreign_errors_hangs_memory_and_pickles(tmp_path):
    """The child harness reports each kind of failure (so a passing fuzz run means something)."""
    import time

    base = fm.vm_size()
    limits = fm.Limits(timeout_s=1.0, memory_mb=200)
    seen = {
        "foreign": fm.run_case(lambda _: [][1], "", limits, base)[0]["outcome"],
        "hang": fm.run_case(lambda _: time.sleep(30), "", limits, base)[0]["outcome"],
        "memory": fm.run_case(lambda _: bytearray(400 * 2**20) and {"outcome": "ok"}, "", limits, base)[0]["outcome"],
        "crash": fm.run_case(lambda _: os.kill(os.getpid(), 11), "", limits, base)[0]["outcome"],
    }
    assert seen == {k: k for k in seen}, seen
    # a pickle posing as weights would create its marker when unpickled: the loader refuses it
    seeds = fm.seed_folders(tmp_path / "seeds")
    fm.pickle_weights(seeds[0])
    result, _, _ = fm.run_case(fm.model_case, str(seeds[0]), fm.Limits(30.0, 1024), base)
    assert result["outcome"] == "error" and "not a plain state dict" in result["message"], result
    assert not (seeds[0] / fm.MARKER).exists()
    assert json.loads((seeds[0] / "model.json").read_text())["weights"] == "weights.pt"
