"""``musiclens activations FILE --model NAME --layer L -o OUT.npz``: a layer's output per patch.

The .npz holds ``activations`` (P, ...) float32, ``patch_starts_s`` (P,), ``layer``,
``module`` and ``model``. For a MusiCNN mid-end layer it also holds the dense matrix
``W`` (P, 753, 187): front end (561 rows) + the three mid-end outputs (64 rows each),
``energy`` (P, 753) the mean square of each row over frames, and ``row_groups`` /
``row_group_bounds`` naming the row ranges.
"""

from __future__ import annotations

import argparse
from typing import Any

from musiclens.cli._model import DEFAULT_MODEL, add_model_argument  # noqa: F401


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("activations", help="save a layer's output per patch as .npz")
    p.add_argument("file", help="an audio file (wav, flac, ogg, mp3, aiff)")
    add_model_argument(p)
    p.add_argument("--layer", required=True, help="a layer name from `musiclens layers` (or a module path)")
    p.add_argument("-o", "--output", required=True, help="the .npz file to write")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from musiclens.cli import print_json
    from musiclens.cli._model import load_model
    from musiclens.cli._output import prepare_output
    from musiclens.core.errors import ParameterError
    from musiclens.core.tagging import (
        audio_to_patches,
        dense_matrix,
        layer_outputs,
        load_audio_for,
    )

    m = load_model(args)
    info = m.layers.get(args.layer)
    if info is None and args.layer not in dict(m.net.named_modules()):
        raise ParameterError(f"model {m.name!r} has no layer {args.layer!r}; layers are: " + ", ".join(m.layers))
    out = Path(args.output)
    if out.suffix != ".npz":
        raise ParameterError(f"the output must be a .npz file, got {out}")
    patches = audio_to_patches(m, load_audio_for(m, args.file))
    acts = layer_outputs(m, patches, [args.layer])[args.layer]
    fe = m.front_end
    # dict[str, Any]: numpy's savez_compressed stub matches **dict values against allow_pickle: bool too
    data: dict[str, Any] = {
        "activations": acts.cpu().numpy().astype(np.float32),
        "patch_starts_s": fe.frames_to_seconds(np.arange(len(patches)) * m.patch_frames),
        "layer": np.array(info.name if info else args.layer),
        "module": np.array(info.module if info else args.layer),
        "model": np.array(m.name),
    }
    module = info.module if info else args.layer
    if module.startswith("mid_end"):
        d = dense_matrix(m, patches)
        data["W"] = d["W"].cpu().numpy().astype(np.float32)
        data["energy"] = d["energy"].cpu().numpy().astype(np.float32)
        data["row_groups"] = np.array([g[0] for g in d["row_groups"]])
        data["row_group_bounds"] = np.array([[g[1], g[2]] for g in d["row_groups"]])
    prepare_output(out)
    np.savez_compressed(out, **data)
    summary = {
        "model": m.name,
        "layer": str(data["layer"]),
        "output": str(out),
        "patches": len(patches),
        "shape": list(acts.shape),
        "W_shape": list(data["W"].shape) if "W" in data else None,
    }
    if args.json:
        print_json(summary)
    else:
        extra = f", W {tuple(data['W'].shape)}" if "W" in data else ""
        print(f"wrote {out}: {summary['layer']} {tuple(acts.shape)}{extra}")
    return 0
