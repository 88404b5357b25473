"""Benchmark: taggram of a 30 s clip, our MusiCNN port against the original musicnn, one run.

    .venv/bin/python tests/benchmarks/bench_musicnn.py [FILE] [--model MTT_musicnn]
        [--repeat 3] [--threads T] [--tf-python /work/tfvenv/bin/python] [--wheel WHEEL]

Both sides do the whole job from the file: decode + resample to 16 kHz, mel front end, the
network on every 3 s patch, sigmoid. The original runs in a subprocess of the side
interpreter with TensorFlow (``--tf-python``, see ``packaging/make_musicnn_golden.py``) from
the unpacked ``musicnn==0.1.0`` wheel (``--wheel``, or ``$MUSICNN_WHEEL``); its ``extractor()``
builds a new TF graph and restores the checkpoint on every call; it is timed like that,
as users call it, and also with the graph built once (``batch_data`` + ``sess.run`` per
patch, the fairest comparison of the computation). For ours, the model is loaded once (as the app does) and
``tag_file`` is timed. Best of ``--repeat`` runs for each; the ratio is original / ours
(> 1: ours is faster), and the largest taggram difference is printed so speed is never
bought with a different answer. Without TensorFlow or the wheel only our side runs.
Without FILE it uses GTZAN's rock.00000 (30 s) from ../shared/data, or 30 s of
synthetic audio written to a temporary file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from musiclens.core.models import registry  # noqa: E402
from musiclens.core.tagging import tag_file  # noqa: E402

ORIGINAL = r"""
import json, sys, time, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, sys.argv[1])
path, model, repeat, threads = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(threads)
from musicnn.extractor import extractor
import io, contextlib
best, taggram = float("inf"), None
with contextlib.redirect_stdout(io.StringIO()):
    for i in range(repeat + 1):  # the first call warms librosa/numba up, not counted
        t = time.perf_counter()
        taggram, _ = extractor(path, model=model, extract_features=False)
        if i:
            best = min(best, time.perf_counter() - t)
# the same work with the graph built and restored once (batch_data + sess.run per patch)
from musicnn import models, configuration as config
from musicnn.extractor import batch_data
import numpy as np
tf.compat.v1.reset_default_graph()
x = tf.compat.v1.placeholder(tf.float32, [None, 187, config.N_MELS])
is_training = tf.compat.v1.placeholder(tf.bool)
with tf.name_scope("model"):
    y = tf.nn.sigmoid(models.define_model(x, is_training, model, 50)[0])
sess = tf.compat.v1.Session()
tf.compat.v1.train.Saver().restore(sess, sys.argv[1] + "/musicnn/" + model + "/")
best_run = float("inf")
for i in range(repeat + 1):
    t = time.perf_counter()
    batch, _ = batch_data(path, 187, 187)
    out = np.concatenate([sess.run(y, {x: batch[j:j + 1], is_training: False})
                          for j in range(batch.shape[0])])
    if i:
        best_run = min(best_run, time.perf_counter() - t)
print(json.dumps({"seconds": best, "seconds_graph_reused": best_run,
                  "taggram": taggram.tolist()}))
"""


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


def run_original(args, path: str) -> dict | None:
    wheel = args.wheel or os.environ.get("MUSICNN_WHEEL")
    if not Path(args.tf_python).exists():
        print(f"original: skipped, no TensorFlow interpreter at {args.tf_python}")
        return None
    if not wheel or not Path(wheel).exists():
        print("original: skipped, give --wheel musicnn-0.1.0-py3-none-any.whl (or $MUSICNN_WHEEL)")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp)
        proc = subprocess.run(
            [args.tf_python, "-c", ORIGINAL, tmp, path, args.model, str(args.repeat), str(args.threads)],
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        print("original: failed\n" + proc.stderr[-2000:])
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?")
    ap.add_argument("--model", default="MTT_musicnn")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--tf-python", default="/work/tfvenv/bin/python")
    ap.add_argument("--wheel", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    path, tmp = (args.file, None) if args.file else default_clip()
    m = registry.load(args.model)
    tag_file(path, m)  # warm-up (librosa's resampler, torch kernels)
    ours_s, tg = float("inf"), None
    for _ in range(args.repeat):
        t = time.perf_counter()
        tg = tag_file(path, m)
        ours_s = min(ours_s, time.perf_counter() - t)
    print(f"clip: {path} ({len(tg.probabilities)} patches), model {args.model}, {args.threads} thread(s)")
    print(f"ours:     {ours_s * 1000:8.1f} ms  top3 {[t for t, _ in tg.top(3)]}")
    orig = run_original(args, path)
    if orig is not None:
        ref = np.array(orig["taggram"])
        top = [m.labels[i] for i in np.argsort(-ref.mean(0))[:3]]
        reused = orig["seconds_graph_reused"]
        print(f"original: {orig['seconds'] * 1000:8.1f} ms  top3 {top}  (extractor() as called)")
        print(f"original: {reused * 1000:8.1f} ms  (TF graph built once, batch_data + sess.run)")
        print(
            f"ratio original / ours: {orig['seconds'] / ours_s:.2f}x "
            f"(graph built once: {reused / ours_s:.2f}x)   "
            f"max |taggram diff|: {np.abs(ref - tg.probabilities).max():.2e}"
        )
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
