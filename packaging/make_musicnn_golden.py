"""Make the golden reference files for the MusiCNN / VGG port by running the ORIGINAL musicnn.

Runs under a side interpreter with TensorFlow (never the app's venv)::

    python3.11 -m venv /work/tfvenv
    /work/tfvenv/bin/pip install tensorflow-cpu==2.15.1 "numpy<2" librosa==0.11.0 soundfile
    pip download --no-deps musicnn==0.1.0 -d /tmp/musicnn-wheel
    /work/tfvenv/bin/python packaging/make_musicnn_golden.py \
        --wheel /tmp/musicnn-wheel/musicnn-0.1.0-py3-none-any.whl

It writes ``tests/golden/musicnn/`` (about 0.6 MB in all):

* ``<clip>.flac``: two synthetic clips made here from a fixed seed, 16 kHz mono 16-bit FLAC
  (``chord_noise``: 6 s, an A-minor chord with harmonics, a bass line and noise, i.e. two
  187-frame patches plus 2 dropped frames; ``clicks_sweep``: 3 s, noise-burst "drums" on a
  rising sine sweep, one patch plus 1 dropped frame).
* ``<clip>.npz``: ``mel16`` (96, T) float16, the mel power of the whole clip exactly as the
  original ``musicnn.extractor.batch_data`` computes it before ``log10(10000·x + 1)``
  (librosa.load at 16 kHz, melspectrogram n_fft 512 / hop 256 / 96 mels, ``.astype(float16)``);
  the original's network input is exactly ``log10(10000 * mel16 + 1)`` (asserted here); and
  ``taggram_<MODEL>`` (P, 50), the original ``musicnn.extractor.extractor(file, model)``
  output (sigmoid probabilities, 3 s patches, no overlap) for the four models.
* ``<clip>_<MODEL>.npz``: layer outputs of the original TF graph for every patch ``p``, fed
  with ``log10(10000·mel16.astype(float32) + 1)[:, 187p : 187(p+1)]`` (computed in float32
  NumPy, the same expression the test uses). Every layer is stored in this project's layout
  ((C, T) for MusiCNN's pooled branches and mid end, (C, F, T) for VGG pools, (n,) for
  vectors) under the torch module path of the port, as

  - ``<module>|p<p>|sub``: ``flat[::step]`` of the C-order flattened output, with
    ``<module>|p<p>|step`` (a prime, about 1000 values per layer), and
  - ``<module>|p<p>|chanmean``: the mean over all but the first axis (every channel);
  - vectors (back-end pool 1506, penultimate 200, logits 50) are stored whole
    (``<module>|p<p>|full``).

  The intermediate tensors are fetched from the graph per patch (``sess.run`` on each
  patch): the original ``extractor()`` re-appends patch 0's cnn1..3/penultimate for every
  later patch, so its features are not used.

Compatibility shims needed for the wheel's TF1 code under TF 2.15: none beyond what the
wheel itself does (``tf.compat.v1.disable_eager_execution()`` at import, ``tf.compat.v1.layers``
still exist in TF 2.15 with its bundled Keras 2). The wheel's ``checkpoint`` files point at
the author's paths, which ``extractor`` never reads (``Saver.restore(sess, "<dir>/")``).
NumPy must be < 2 so that ``10000 * float16_array`` is computed in float32 as in 2019.
oneDNN is switched off (``TF_ENABLE_ONEDNN_OPTS=0``, set below) for a reference closer to
exact arithmetic.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

# TF's oneDNN kernels reorder float32 sums; without them the reference is closer to a
# float64 evaluation (max 1.2e-4 instead of 2.0e-4 on the mid end, whose values reach ~65).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT = REPO_ROOT / "tests" / "golden" / "musicnn"
SR = 16000
N_FRAMES = 187
MODELS = ("MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg")
TARGET_VALUES = 1000


# ----------------------------------------------------------------------------- clips
def make_clips() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20190906)
    clips = {}

    n = 6 * SR
    t = np.arange(n) / SR
    chord = np.zeros(n)
    for f0 in (220.0, 261.63, 329.63):  # A3 C4 E4
        for h in range(1, 6):
            chord += np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h**1.5
    bass = np.sin(2 * np.pi * np.where(t % 2 < 1, 55.0, 82.41) * t)
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t) ** 2
    noise = np.convolve(rng.standard_normal(n), np.ones(8) / 8, mode="same")
    y = 0.08 * chord * env + 0.15 * bass + 0.05 * noise
    clips["chord_noise"] = y

    n = 3 * SR
    t = np.arange(n) / SR
    sweep = np.sin(2 * np.pi * 100.0 * (np.exp(t * np.log(40) / 3.0) - 1) * 3.0 / np.log(40))
    hits = np.zeros(n)
    for k, start in enumerate(range(0, n, SR // 4)):  # 240 bpm sixteenths of noise bursts
        length = min(SR // 8, n - start)
        decay = np.exp(-np.arange(length) / (SR * (0.01 if k % 2 else 0.05)))
        burst = rng.standard_normal(length)
        if k % 4 == 0:  # a "kick": low sine thump
            burst = np.sin(2 * np.pi * 60 * np.arange(length) / SR) * 3
        hits[start : start + length] += burst * decay
    y = 0.2 * sweep + 0.25 * hits
    clips["clicks_sweep"] = y
    return {k: (0.9 * v / np.abs(v).max()).astype(np.float32) for k, v in clips.items()}


def _next_prime(n: int) -> int:
    n = max(2, n)
    while any(n % d == 0 for d in range(2, int(n**0.5) + 1)):
        n += 1
    return n


def _store(out: dict, name: str, p: int, arr: np.ndarray) -> None:
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 1:
        out[f"{name}|p{p}|full"] = arr
        return
    step = _next_prime(arr.size // TARGET_VALUES)
    out[f"{name}|p{p}|sub"] = np.ascontiguousarray(arr).reshape(-1)[::step].copy()
    out[f"{name}|p{p}|step"] = np.array(step)
    out[f"{name}|p{p}|chanmean"] = arr.reshape(arr.shape[0], -1).mean(axis=1)


# ----------------------------------------------------------------------------- TF side
def run_layers(musicnn_dir: Path, model: str, inputs: list[np.ndarray]) -> list[dict]:
    """Feed each (187, 96) patch through the original graph; return torch-layout layers."""
    import tensorflow as tf
    from musicnn import models

    tf.compat.v1.reset_default_graph()
    x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, 96])
    is_training = tf.compat.v1.placeholder(tf.bool)
    fetch: dict[str, tf.Tensor] = {}
    with tf.name_scope("model"):
        if "vgg" in model:
            logits, *pools = models.define_model(x, is_training, model, 50)
            for i, pool in enumerate(pools, start=1):
                fetch[f"block{i}"] = pool  # (B, T, F, C)
        else:
            # build_musicnn, step by step with the wheel's own functions (same variable
            # creation order, so the checkpoint restores), to keep handles on every branch.
            branches = models.frontend(x, is_training, 96, num_filt=1.6, type="7774timbraltemporal")
            front = tf.concat(branches, 2)
            mids = models.midend(front, is_training, 64)
            dense_in = tf.concat(mids, 2)
            logits, penultimate, mean_pool, max_pool = models.backend(
                dense_in, is_training, 50, 200, type="globalpool_dense"
            )
            for key, b in zip(["timbral_38", "timbral_67", "temporal_128", "temporal_64", "temporal_32"], branches):
                fetch[f"front_end.{key}"] = b  # (B, T, C)
            fetch["front_end"] = front
            for i in (1, 2, 3):
                fetch[f"mid_end.layer{i}"] = mids[i]  # (B, T, 64, 1)
            fetch["mid_end"] = dense_in
            fetch["max_pool"] = max_pool
            fetch["mean_pool"] = mean_pool
            fetch["back_end.bn_dense"] = penultimate
    fetch["output"] = logits
    sess = tf.compat.v1.Session()
    tf.compat.v1.train.Saver().restore(sess, str(musicnn_dir / model) + "/")
    results = []
    for patch in inputs:
        vals = sess.run(fetch, feed_dict={x: patch[None], is_training: False})
        layers = {}
        for name, v in vals.items():
            v = np.asarray(v)[0]
            if name in ("max_pool", "mean_pool"):
                continue
            if v.ndim == 3 and "vgg" in model:  # (T, F, C) -> (C, F, T)
                v = v.transpose(2, 1, 0)
            elif v.ndim == 3:  # (T, C, 1) -> (C, T)
                v = v[:, :, 0].T
            elif v.ndim == 2:  # (T, C) -> (C, T)
                v = v.T
            layers[name] = v
        if "vgg" not in model:
            mx, mn = np.asarray(vals["max_pool"])[0, :, 0], np.asarray(vals["mean_pool"])[0, :, 0]
            layers["back_end.pool"] = np.stack([mx, mn], axis=1).reshape(-1)
            layers["back_end.output"] = layers.pop("output")
        results.append(layers)
    sess.close()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", type=Path, required=True, help="musicnn-0.1.0-py3-none-any.whl")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    import librosa
    import soundfile as sf

    tmp = Path(tempfile.mkdtemp(prefix="musicnn-golden-"))
    with zipfile.ZipFile(args.wheel) as zf:
        zf.extractall(tmp)
    sys.path.insert(0, str(tmp))
    from musicnn import extractor as ex  # the original code, unmodified

    args.out.mkdir(parents=True, exist_ok=True)
    for clip, y in make_clips().items():
        wav = args.out / f"{clip}.flac"
        sf.write(str(wav), y, SR, subtype="PCM_16")
        batch, logmel = ex.batch_data(str(wav), N_FRAMES, N_FRAMES)  # (P, 187, 96), (T, 96)
        # the float16 mel power behind it, recomputed the same way as batch_data
        audio, sr = librosa.load(str(wav), sr=SR)
        mel16 = librosa.feature.melspectrogram(y=audio, sr=sr, hop_length=256, n_fft=512, n_mels=96).T.astype(
            np.float16
        )
        assert np.array_equal(np.log10(10000 * mel16 + 1), logmel), "mel16 does not match"
        x_full = np.log10(10000 * mel16.astype(np.float32) + 1).astype(np.float32)
        print(
            f"{clip}: {len(y) / SR:.2f} s, {logmel.shape[0]} frames, {batch.shape[0]} patches; "
            f"max |recomputed - original input| = {np.abs(x_full - logmel).max():.3g}"
        )
        clip_out = {"mel16": mel16.T.copy()}
        patches = [x_full[p * N_FRAMES : (p + 1) * N_FRAMES] for p in range(batch.shape[0])]
        for model in MODELS:
            taggram, labels = ex.extractor(str(wav), model=model, extract_features=False)
            clip_out[f"taggram_{model}"] = taggram.astype(np.float32)
            layers = run_layers(tmp / "musicnn", model, patches)
            out: dict[str, np.ndarray] = {}
            for p, lay in enumerate(layers):
                for name, arr in lay.items():
                    _store(out, name, p, arr)
                # the per-patch graph run must reproduce extractor()'s taggram
                probs = 1 / (1 + np.exp(-lay["back_end.output" if "musicnn" in model else "output"]))
                assert np.abs(probs - taggram[p]).max() < 1e-4, (model, p)
            np.savez_compressed(args.out / f"{clip}_{model}.npz", **out)
            top = [labels[i] for i in taggram.mean(0).argsort()[::-1][:3]]
            print(f"  {model}: taggram {taggram.shape}, top3 {top}")
        np.savez_compressed(args.out / f"{clip}.npz", **clip_out)
    total = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
