"""``musiclens layers --model NAME [--json]``: every inspectable layer and its output shape."""

from __future__ import annotations

import argparse

from musiclens.cli._model import DEFAULT_MODEL, add_model_argument  # noqa: F401


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("layers", help="the inspectable layers of a model, with output shapes")
    add_model_argument(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def layer_table(m) -> dict:
    """{"model", "input_shape", "layers": [{name, module, group, kind, description, shape}]}.

    Shapes are per item (no batch axis), measured with one patch of zeros.
    """
    import torch

    from musiclens.core.tagging import layer_outputs

    fe = m.front_end
    x = torch.zeros(1, fe.channels, fe.n_bins, m.patch_frames, device=m.device)
    outs = layer_outputs(m, x, list(m.layers))
    return {
        "model": m.name,
        "input_shape": list(x.shape[1:]),
        "layers": [
            {
                "name": info.name,
                "module": info.module,
                "group": info.group,
                "kind": info.kind,
                "description": info.description,
                "shape": list(outs[info.name].shape[1:]),
            }
            for info in m.layers.values()
        ],
    }


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import print_json
    from musiclens.core.models import registry

    table = layer_table(registry.load(args.model, device=args.device))
    if args.json:
        print_json(table)
        return 0
    print(f"{table['model']}: input {tuple(table['input_shape'])} (channels, mel bands, frames)")
    width = max(len(row["name"]) for row in table["layers"])
    for row in table["layers"]:
        print(f"  {row['name']:<{width}}  {tuple(row['shape'])!s:<18} {row['kind']}")
    return 0
