"""Benchmark: ``musiclens batch`` files per second with 1 worker and with 2, and the memory of
the whole process tree over time.

    .venv/bin/python tests/benchmarks/bench_batch.py [--files 200] [--seconds 5] \\
        [--model MSD_musicnn] [--analyses tags,attribution:gradient] [--workers 1,2]

Writes ``--files`` synthetic recordings of ``--seconds`` s (tones, chords, noise; 16 kHz) into
a temporary folder, runs ``musiclens batch`` on it once per worker count as a subprocess, and
samples the resident memory (RSS) of the command and all its children every 0.2 s. Prints,
per run: files per second of the analysis (the command's own figure: model loading excluded,
worker start-up included), after the first file (steady state), and of the whole command
(wall clock); the peak RSS of the process tree and the RSS over the run (deciles of the
time); then the scaling efficiency (files/s with N workers) / (N × files/s with 1), and
whether the tables are equal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def make_files(root: Path, n: int, seconds: float, sr: int = 16000) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    for i in range(n):
        kind = i % 3
        if kind == 0:
            y = 0.3 * np.sin(2 * np.pi * (110 + 7 * i) * t)
        elif kind == 1:
            y = sum(0.1 * np.sin(2 * np.pi * f * (1 + i / 400) * t) for f in (261.6, 329.6, 392.0))
        else:
            y = 0.05 * rng.standard_normal(len(t))
        folder = root / f"group{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"clip{i:04d}.wav", np.asarray(y, dtype=np.float32), sr)
    return root


def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of ``pid`` and all its descendants, from /proc."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run(folder: Path, out: Path, args: argparse.Namespace, workers: int) -> dict:
    cmd = [
        str(REPO / ".venv" / "bin" / "musiclens"),
        "batch",
        str(folder),
        "--model",
        args.model,
        "--analyses",
        args.analyses,
        "--out",
        str(out),
        "--workers",
        str(workers),
        "--device",
        args.device,
        "--quiet",
        "--json",
    ]
    samples: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def sample() -> None:
        while proc.poll() is None:
            samples.append((time.perf_counter() - t0, tree_rss(proc.pid)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"musiclens batch failed ({proc.returncode}): {stderr.strip()}")
    summary = json.loads(stdout)
    rss = np.array([s[1] for s in samples], dtype=np.float64) / 2**20
    deciles = (
        [float(rss[min(len(rss) - 1, int(q * (len(rss) - 1)))]) for q in np.linspace(0, 1, 11)] if len(rss) else []
    )
    return {"summary": summary, "wall_s": wall, "peak_mb": float(rss.max()) if len(rss) else 0.0, "deciles": deciles}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--model", default="MSD_musicnn")
    ap.add_argument("--analyses", default="tags,attribution:gradient")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts; the first is the baseline")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    folder = make_files(tmp / "files", args.files, args.seconds)
    print(
        f"{args.files} files of {args.seconds:g} s, {args.model}, analyses {args.analyses}, "
        f"{os.cpu_count()} CPUs (load average before: {os.getloadavg()[0]:.2f})"
    )
    results = {}
    for w in counts:
        r = run(folder, tmp / f"out{w}", args, w)
        s = r["summary"]
        results[w] = r
        print(
            f"workers {w}: {s['files_per_s']:.2f} files/s analysing ({s['analysed']} files in {s['seconds']:.1f} s), "
            f"{s['analysed'] / r['wall_s']:.2f} files/s whole command ({r['wall_s']:.1f} s), "
            f"{s['ok']} ok, {s['errors']} errors; peak RSS of the process tree {r['peak_mb']:.0f} MB"
        )
        r["steady"] = (s["analysed"] - 1) / max(s["seconds"] - s["first_s"], 1e-9)
        print(f"  after the first file ({s['first_s']:.1f} s, worker start-up included): {r['steady']:.2f} files/s")
        print(f"  RSS over the run (MB, at 0 %, 10 %, ..., 100 % of the time): {[round(d) for d in r['deciles']]}")
    base = results[counts[0]]
    for w in counts[1:]:
        for key, what in (("steady", "after the first file"), ("files_per_s", "analysing"), ("wall", "whole command")):
            if key == "wall":
                speed = base["wall_s"] / results[w]["wall_s"]
            elif key == "steady":
                speed = results[w]["steady"] / base["steady"]
            else:
                speed = results[w]["summary"][key] / base["summary"][key]
            print(f"scaling {counts[0]} -> {w} workers ({what}): speed-up {speed:.2f}x, efficiency {speed / w:.0%}")
    import pyarrow.parquet as pq

    tables = [pq.read_table(tmp / f"out{w}" / "summary.parquet") for w in counts]
    print("tables equal across worker counts:", all(t.equals(tables[0]) for t in tables[1:]))
    print(f"(files and outputs in {tmp})")


if __name__ == "__main__":
    main()
