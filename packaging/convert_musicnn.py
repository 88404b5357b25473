"""Convert the pretrained MusiCNN / VGG checkpoints of the ``musicnn==0.1.0`` wheel.

Writes, for each of MTT_musicnn, MSD_musicnn, MTT_vgg and MSD_vgg::

    resources/models/<NAME>/weights.safetensors   tensor names = the torch state_dict keys
    resources/models/<NAME>/model.json             musiclens-model/1 metadata + provenance
    resources/models/LICENSE-musicnn.txt           the wheel's ISC licence

Reading a TF1 checkpoint needs TensorFlow, which the app never needs, so the checkpoint
is read by a *side* interpreter (``--tf-python``) that runs this same file with
``--dump``; everything else runs in the project venv. The tensors are mapped and written
with NumPy + ``safetensors.numpy`` (no torch code); only the front-end spec is taken from
``musiclens.core.features`` (which imports torch). Adam slots and ``beta1/2_power`` are
dropped. The tensor names are the ``state_dict`` keys of ``musiclens.core.models.musicnn``'s
``Musicnn`` / ``MusicnnVgg`` (``tests/test_musicnn.py`` checks names and shapes).

Remake the bundled weights (from the repo root)::

    python3.11 -m venv /work/tfvenv
    /work/tfvenv/bin/pip install tensorflow-cpu==2.15.1 "numpy<2"
    pip download --no-deps musicnn==0.1.0 -d /tmp/musicnn-wheel
    .venv/bin/python packaging/convert_musicnn.py \
        --wheel /tmp/musicnn-wheel/musicnn-0.1.0-py3-none-any.whl \
        --tf-python /work/tfvenv/bin/python

(Without ``--wheel`` the script runs ``pip download`` itself.) The output is
deterministic: running it twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
MODELS = ("MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg")
REPO_ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- side venv part
def dump_checkpoint(folder: str, out: str) -> None:
    """(Runs under TensorFlow.) Every non-optimizer variable of the checkpoint -> ``out`` .npz."""
    import numpy as np
    import tensorflow as tf

    reader = tf.compat.v1.train.NewCheckpointReader(str(Path(folder)) + "/")
    arrays = {}
    for name in sorted(reader.get_variable_to_shape_map()):
        if "Adam" in name or name in ("beta1_power", "beta2_power"):
            continue
        arrays[name.replace("/", ":")] = np.asarray(reader.get_tensor(name))
    np.savez(out, **arrays)


# ----------------------------------------------------------------------------- name mapping
def _conv2d(k):  # TF [time, freq, in, out] -> torch (out, in, freq, time)
    return k.transpose(3, 2, 1, 0)


def _conv1d(k):  # TF mid-end [time, C_in (as width), 1, out] -> torch Conv1d (out, C_in, time)
    return k[:, :, 0, :].transpose(2, 1, 0)


def _dense(k):  # TF [in, out] -> torch (out, in)
    return k.T


def _bn(tf_name: str, torch_name: str, v: dict, out: dict) -> None:
    import numpy as np

    out[f"{torch_name}.weight"] = v.pop(f"{tf_name}:gamma")
    out[f"{torch_name}.bias"] = v.pop(f"{tf_name}:beta")
    out[f"{torch_name}.running_mean"] = v.pop(f"{tf_name}:moving_mean")
    out[f"{torch_name}.running_var"] = v.pop(f"{tf_name}:moving_variance")
    out[f"{torch_name}.num_batches_tracked"] = np.zeros((), dtype=np.int64)


def _param(tf_name: str, torch_name: str, v: dict, out: dict, fn) -> None:
    out[f"{torch_name}.weight"] = fn(v.pop(f"{tf_name}:kernel"))
    out[f"{torch_name}.bias"] = v.pop(f"{tf_name}:bias")


def map_musicnn(v: dict) -> dict:
    """TF variable dict (names with ':') -> torch state dict of :class:`Musicnn`."""
    out: dict = {}
    _bn("batch_normalization", "input_bn", v, out)
    branches = ["timbral_38", "timbral_67", "temporal_128", "temporal_64", "temporal_32"]
    for i, br in enumerate(branches):
        _param("conv2d" if i == 0 else f"conv2d_{i}", f"front_end.{br}.conv", v, out, _conv2d)
        _bn(f"batch_normalization_{i + 1}", f"front_end.{br}.bn", v, out)
    for j in (1, 2, 3):
        _param(f"conv2d_{4 + j}", f"mid_end.layer{j}.conv", v, out, _conv1d)
        _bn(f"batch_normalization_{5 + j}", f"mid_end.layer{j}.bn", v, out)
    _bn("batch_normalization_9", "back_end.bn_pool", v, out)
    _param("dense", "back_end.dense", v, out, _dense)
    _bn("batch_normalization_10", "back_end.bn_dense", v, out)
    _param("dense_1", "back_end.output", v, out, _dense)
    if v:
        raise RuntimeError(f"unmapped TF variables: {sorted(v)}")
    return out


def map_vgg(v: dict, *, n_frames: int = 187, n_mels: int = 96) -> dict:
    """TF variable dict -> torch state dict of :class:`MusicnnVgg`."""
    out: dict = {}
    _bn("batch_normalization", "input_bn", v, out)
    for i in range(1, 6):
        _param(f"{i}CNN", f"block{i}.conv", v, out, _conv2d)
        _bn(f"batch_normalization_{i}", f"block{i}.bn", v, out)
    # TF flattens pool5 (B, T, F, C) row-major; torch flattens (B, C, F, T).
    k = v.pop("dense:kernel")
    f, t = n_mels, n_frames  # pool5's (F, T): the five (freq, time) max pools of the vgg
    for (pf, pt), (sf, st) in [
        ((1, 4), (2, 2)),
        ((2, 2), (2, 2)),
        ((2, 2), (2, 2)),
        ((2, 2), (2, 2)),
        ((4, 4), (4, 4)),
    ]:
        f, t = (f - pf) // sf + 1, (t - pt) // st + 1
    c = k.shape[0] // (f * t)
    out["output.weight"] = k.reshape(t, f, c, -1).transpose(2, 1, 0, 3).reshape(c * f * t, -1).T
    out["output.bias"] = v.pop("dense:bias")
    if v:
        raise RuntimeError(f"unmapped TF variables: {sorted(v)}")
    return out


# ----------------------------------------------------------------------------- main part
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _labels(extracted: Path, dataset: str) -> list[str]:
    """MTT_LABELS / MSD_LABELS from the wheel's configuration.py (parsed, not imported)."""
    import ast

    tree = ast.parse((extracted / "musicnn" / "configuration.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == f"{dataset}_LABELS":
            return list(ast.literal_eval(node.value))
    raise RuntimeError(f"{dataset}_LABELS not found in the wheel's configuration.py")


def convert(wheel: Path, tf_python: str, out_root: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    sys.path.insert(0, str(REPO_ROOT))
    from musiclens.core.features import musicnn_frontend

    digest = _sha256(wheel)
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest} != expected {WHEEL_SHA256}")
    out_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp / "wheel")
        ex = tmp / "wheel"
        licence = (ex / "musicnn-0.1.0.dist-info" / "LICENSE.md").read_text()
        (out_root / "LICENSE-musicnn.txt").write_text(
            "Licence of the MusiCNN / VGG weights in resources/models/{MTT,MSD}_{musicnn,vgg},\n"
            "converted from the musicnn 0.1.0 wheel (https://github.com/jordipons/musicnn),\n"
            "file musicnn-0.1.0.dist-info/LICENSE.md (ISC licence):\n\n" + licence.strip() + "\n"
        )
        for name in MODELS:
            dataset, arch = name.split("_")
            folder = ex / "musicnn" / name
            npz = tmp / f"{name}.npz"
            subprocess.run([tf_python, __file__, "--dump", str(folder), str(npz)], check=True)
            with np.load(npz) as z:
                tf_vars = {k: z[k] for k in z.files}
            n_tf = sum(int(a.size) for a in tf_vars.values())
            if arch == "musicnn":
                state = map_musicnn(dict(tf_vars))
                architecture = {
                    "family": "musicnn",
                    "params": {
                        "n_mels": 96,
                        "n_labels": 50,
                        "timbral_filters": 204,
                        "temporal_filters": 51,
                        "midend_filters": 64,
                        "backend_units": 200,
                    },
                }
            else:
                state = map_vgg(dict(tf_vars))
                architecture = {
                    "family": "musicnn_vgg",
                    "params": {"n_mels": 96, "n_frames": 187, "n_labels": 50, "filters": 128},
                }
            # (np.ascontiguousarray would turn the 0-d num_batches_tracked into shape (1,))
            state = {k: np.array(a, order="C", copy=True) for k, a in sorted(state.items())}
            dest = out_root / name
            dest.mkdir(parents=True, exist_ok=True)
            # one metadata key only: safetensors writes a multi-key header in random order,
            # which would make the output differ from run to run (provenance is in model.json)
            save_file(state, str(dest / "weights.safetensors"), metadata={"format": "pt"})
            result = (folder / "experiment.result").read_text().strip()
            meta = {
                "format": "musiclens-model/1",
                "name": name,
                "architecture": architecture,
                "front_end": musicnn_frontend().to_dict(),
                "labels": _labels(ex, dataset),
                "multilabel": True,
                "patch_frames": 187,
                "provenance": {
                    "description": (
                        f"{'MusiCNN' if arch == 'musicnn' else 'VGG-like baseline'} by Jordi "
                        f"Pons and Xavier Serra, pretrained on "
                        f"{'MagnaTagATune' if dataset == 'MTT' else 'the Million Song Dataset'}"
                        " (50 tags); converted from TensorFlow 1 to PyTorch."
                    ),
                    "source": "PyPI wheel musicnn==0.1.0 (https://github.com/jordipons/musicnn)",
                    "wheel": WHEEL_NAME,
                    "wheel_sha256": digest,
                    "source_path": [f"musicnn/{name}/.index", f"musicnn/{name}/.data-00000-of-00001"],
                    "licence": "ISC",
                    "licence_file": "resources/models/LICENSE-musicnn.txt",
                    "copyright": "Copyright (c) Music Technology Group, Universitat Pompeu "
                    "Fabra 2019. Code developed by Jordi Pons.",
                    "paper": "J. Pons, X. Serra: musicnn: pre-trained convolutional neural "
                    "networks for music audio tagging. ISMIR 2019 LBD, "
                    "arXiv:1909.06654",
                    "reported_test_metrics": result,
                    "converter": "packaging/convert_musicnn.py",
                    "parameters": n_tf,
                    "notes": "Adam slots dropped; batch-norm eps 1e-3; patches of 187 frames "
                    "(3 s), no overlap, as musicnn's extractor defaults.",
                },
            }
            (dest / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
            print(f"{name}: {len(state)} tensors, {n_tf} parameters -> {dest}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dump", nargs=2, metavar=("CKPT_FOLDER", "OUT_NPZ"), help="internal: read one checkpoint with TensorFlow"
    )
    p.add_argument("--wheel", type=Path, help=f"path to {WHEEL_NAME} (downloaded if absent)")
    p.add_argument(
        "--tf-python", default="/work/tfvenv/bin/python", help="python with tensorflow-cpu==2.15.1 and numpy<2"
    )
    p.add_argument("--out", type=Path, default=REPO_ROOT / "resources" / "models")
    args = p.parse_args(argv)
    if args.dump:
        dump_checkpoint(*args.dump)
        return 0
    wheel = args.wheel
    if wheel is None:
        dl = Path(tempfile.mkdtemp(prefix="musicnn-wheel-"))
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "musicnn==0.1.0", "-d", str(dl)], check=True
        )
        wheel = dl / WHEEL_NAME
    convert(wheel, args.tf_python, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
