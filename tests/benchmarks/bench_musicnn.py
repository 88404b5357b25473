"""Benchmark: taggram of a 30 s clip, our MusiCNN port against the original musicnn, one run.

    .venv/bin/python tests/benchmarks/bench_musicnn.py [FILE] [--model MTT_musicnn]
        [--repeat 3] [--threads 1] [--tf-python /work/tfvenv/bin/python] [--wheel WHEEL]
        [--no-extractor]

Both sides do the whole job from the file: decode + resample to 16 kHz, mel front end, the
network on every 3 s patch (one patch per run, as both do on a CPU), sigmoid. The original
runs in a side interpreter with TensorFlow (``--tf-python``; default /work/tfvenv/bin/python,
see ``packaging/make_musicnn_golden.py`` for the venv) from the unpacked ``musicnn==0.1.0``
wheel (``--wheel``, or ``$MUSICNN_WHEEL``, or /work/scratch/wheels/ where ``pip download
musicnn==0.1.0 --no-deps -d /work/scratch/wheels`` puts it). That interpreter is started
once and kept (:class:`Original`): its graph is built and restored once, then each run is
``batch_data`` + ``sess.run`` per patch with ``is_training`` False (inference), the fairest
comparison of the computation; ``extractor()`` as users call it (a new graph and checkpoint
restore on every call) is timed too unless ``--no-extractor``. TensorFlow gets ``--threads``
intra- and inter-op threads (every session, ``extractor()``'s too), torch ``--threads``; the
CPU time / wall time of each side is printed as a check of the threads really used; with
one thread both sides are pinned to the same core (``--no-pin`` to not: TensorFlow keeps a
second thread busy even with one intra- and one inter-op thread, see :func:`one_core`). Runs
alternate between the two sides so both see the same machine load; each figure is the best
of ``--repeat``. For ours the model is loaded once (as the app does) and ``tag_file`` is
timed. The ratio is original / ours (> 1: ours is faster), and the largest taggram
difference is printed so speed is never bought with a different answer. Without TensorFlow
or the wheel only our side runs. Without FILE it uses GTZAN's rock.00000 (30 s) from
../shared/data, or 30 s of synthetic audio written to a temporary file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from musiclens.core.models import registry  # noqa: E402
from musiclens.core.tagging import Taggram, tag_file  # noqa: E402

TF_PYTHON = "/work/tfvenv/bin/python"
WHEEL = "/work/scratch/wheels/musicnn-0.1.0-py3-none-any.whl"

# Runs in the TensorFlow interpreter: argv = wheel folder, model, threads. Reads commands
# "graph PATH" / "extractor PATH" on stdin, answers one JSON line each.
ORIGINAL = r"""
import contextlib, io, json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, sys.argv[1])
model, threads = sys.argv[2], int(sys.argv[3])
import numpy as np
import tensorflow as tf

def _config():
    return tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)

class _Session(tf.compat.v1.Session):  # extractor() opens its own session: give it the same threads
    def __init__(self, target="", graph=None, config=None):
        super().__init__(target, graph, config or _config())

tf.compat.v1.Session = _Session
from musicnn import configuration as config, models
from musicnn.extractor import batch_data, extractor

graph = tf.Graph()
with graph.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [None, 187, config.N_MELS])
    is_training = tf.compat.v1.placeholder(tf.bool)
    with tf.name_scope("model"):
        y = tf.nn.sigmoid(models.define_model(x, is_training, model, 50)[0])
    sess = tf.compat.v1.Session(graph=graph)
    tf.compat.v1.train.Saver().restore(sess, sys.argv[1] + "/musicnn/" + model + "/")

def graph_run(path):
    batch, _ = batch_data(path, 187, 187)
    return np.concatenate([sess.run(y, {x: batch[j : j + 1], is_training: False}) for j in range(batch.shape[0])])

onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset: on, TF's default")
print(json.dumps({"ready": True, "tensorflow": tf.__version__, "numpy": np.__version__, "onednn": onednn}), flush=True)
for line in sys.stdin:
    cmd, path = line.rstrip("\n").split(" ", 1)
    t, c = time.perf_counter(), time.process_time()
    if cmd == "graph":
        out = graph_run(path)
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            out, _ = extractor(path, model=model, extract_features=False)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    print(json.dumps({"seconds": wall, "cpu": cpu, "taggram": out.tolist()}), flush=True)
"""


def default_wheel() -> str | None:
    """``$MUSICNN_WHEEL``, else :data:`WHEEL` when it exists, else None."""
    wheel = os.environ.get("MUSICNN_WHEEL") or WHEEL
    return wheel if Path(wheel).exists() else None


class Original:
    """The original musicnn in a TensorFlow side interpreter, started once, graph built once.

    ``Original.start(...)`` returns None (after printing why) when the interpreter or the
    wheel is missing or TensorFlow fails to start. :meth:`run` times one job on a file:
    ``"graph"`` (the kept graph: ``batch_data`` + ``sess.run`` per patch) or ``"extractor"``
    (``musicnn.extractor.extractor`` as users call it) -> {"seconds", "cpu", "taggram" (P, 50)}.
    """

    def __init__(self, proc: subprocess.Popen[str], tmp: tempfile.TemporaryDirectory[str], info: dict) -> None:
        self.proc, self.tmp, self.info = proc, tmp, info

    @classmethod
    def start(
        cls, tf_python: str, wheel: str | None, model: str, threads: int, cpus: set[int] | None = None
    ) -> Original | None:
        """``cpus``: the cores the interpreter may run on (None: any)."""
        if not Path(tf_python).exists():
            print(f"original: skipped, no TensorFlow interpreter at {tf_python}")
            return None
        if not wheel or not Path(wheel).exists():
            print(f"original: skipped, no musicnn wheel (give --wheel, $MUSICNN_WHEEL, or put it at {WHEEL})")
            return None
        tmp = tempfile.TemporaryDirectory(prefix="musicnn-wheel-")
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp.name)
        proc = subprocess.Popen(
            [tf_python, "-c", ORIGINAL, tmp.name, model, str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            preexec_fn=None if cpus is None else (lambda: os.sched_setaffinity(0, cpus)),
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            print("original: failed to start\n" + err[-2000:])
            tmp.cleanup()
            return None
        return cls(proc, tmp, json.loads(line))

    def run(self, job: str, path: str | os.PathLike[str]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{job} {path}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError("the original musicnn stopped:\n" + err[-2000:])
        out: dict[str, Any] = json.loads(line)
        out["taggram"] = np.asarray(out["taggram"], dtype=np.float32)
        return out

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.tmp.cleanup()


def one_core(threads: int) -> set[int] | None:
    """The core both sides are pinned to for a one-thread comparison (the last one this
    process may use), or None for more threads. With one intra- and one inter-op thread
    TensorFlow may still keep a second thread busy (measured once on the 2-core machine at
    load 5: two threads of ~0.55 s CPU each for 3 taggrams; at load 2 its CPU/wall was 1.0),
    so both sides get the same single core."""
    return {max(os.sched_getaffinity(0))} if threads == 1 else None


@contextlib.contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """This process on ``cpus`` (None: unchanged) for the block, its affinity restored after."""
    before = os.sched_getaffinity(0)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def time_ours(path: str | os.PathLike[str], m: registry.LoadedModel) -> tuple[float, float, Taggram]:
    """One ``tag_file`` run: (wall seconds, CPU seconds of this process, taggram)."""
    t, c = time.perf_counter(), time.process_time()
    tg = tag_file(path, m)
    return time.perf_counter() - t, time.process_time() - c, tg


def default_clip() -> tuple[str, str | None]:
    real = REPO.parent / "shared/data/audio/gtzan-full-pecmae/rock/rock.00000.wav"
    if real.exists():
        return str(real), None
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(30 * 16000) / 16000
    y = 0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(t.size)
    tmp = tempfile.mkdtemp(prefix="bench-musicnn-")
    path = os.path.join(tmp, "synthetic30s.wav")
    sf.write(path, y.astype(np.float32), 16000)
    return path, tmp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?")
    ap.add_argument("--model", default="MTT_musicnn")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads and TF intra/inter-op threads (default 1)")
    ap.add_argument("--tf-python", default=TF_PYTHON)
    ap.add_argument("--wheel", default=None)
    ap.add_argument("--no-extractor", action="store_true", help="skip timing extractor() (a graph per call)")
    ap.add_argument("--no-pin", action="store_true", help="with --threads 1, do not pin both sides to one core")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    path, tmp = (args.file, None) if args.file else default_clip()
    m = registry.load(args.model)
    cpus = None if args.no_pin else one_core(args.threads)
    orig = Original.start(args.tf_python, args.wheel or default_wheel(), args.model, args.threads, cpus)
    jobs = [] if orig is None else (["graph"] if args.no_extractor else ["graph", "extractor"])
    with pinned(cpus):
        time_ours(path, m)  # warm-up (librosa's resampler, torch kernels)
    for job in jobs:
        orig.run(job, path)  # type: ignore[union-attr]  # warm-up (librosa/numba, TF's kernels)
    best: dict[str, tuple[float, float]] = {}
    results: dict[str, Any] = {}
    print(f"load at start: {os.getloadavg()[0]:.2f}")
    for _ in range(args.repeat):  # alternating, so both sides see the same load
        runs = [("ours", lambda: time_ours(path, m))] + [
            (job, lambda job=job: orig.run(job, path))  # type: ignore[union-attr]
            for job in jobs
        ]
        for name, fn in runs:
            with pinned(cpus):
                r = fn()
            wall, cpu, out = (r[0], r[1], r[2]) if isinstance(r, tuple) else (r["seconds"], r["cpu"], r["taggram"])
            if wall < best.get(name, (float("inf"), 0.0))[0]:
                best[name], results[name] = (wall, cpu), out
    tg = results["ours"]
    ours_s, ours_cpu = best["ours"]
    where = "any core" if cpus is None else f"both pinned to core {sorted(cpus)}"
    print(f"clip: {path} ({len(tg.probabilities)} patches), model {args.model}, {args.threads} thread(s), {where}")
    print(f"ours:     {ours_s * 1000:8.1f} ms (CPU/wall {ours_cpu / ours_s:.2f})  top3 {[t for t, _ in tg.top(3)]}")
    if orig is not None:
        info = orig.info
        print(f"original: tensorflow-cpu {info['tensorflow']}, numpy {info['numpy']}, oneDNN {info['onednn']}")
        ref = results["graph"]
        top = [m.labels[i] for i in np.argsort(-ref.mean(0))[:3]]
        g_s, g_cpu = best["graph"]
        print(f"original: {g_s * 1000:8.1f} ms (CPU/wall {g_cpu / g_s:.2f})  top3 {top}  (graph built once)")
        line = f"ratio original / ours: {g_s / ours_s:.2f}x wall, {g_cpu / ours_cpu:.2f}x CPU (graph built once)"
        if "extractor" in best:
            e_s, e_cpu = best["extractor"]
            print(f"original: {e_s * 1000:8.1f} ms (CPU/wall {e_cpu / e_s:.2f})  (extractor() as called)")
            line += f", {e_s / ours_s:.2f}x (extractor())"
        print(f"{line}   max |taggram diff|: {np.abs(ref - tg.probabilities).max():.2e}")
        orig.close()
    print(f"load at end: {os.getloadavg()[0]:.2f}")
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
