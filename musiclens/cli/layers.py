"""``musiclens layers --model NAME [--json]``: every inspectable layer and its output shape.

For a folder holding the user's own network it also says, one line per feature, what works
with it and what does not (:func:`musiclens.core.models.user_models.describe`); a TorchScript
network has no hookable layers, and the command says why.
"""

from __future__ import annotations

import argparse

from musiclens.cli._model import DEFAULT_MODEL, add_model_argument  # noqa: F401


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("layers", help="the inspectable layers of a model, with output shapes")
    add_model_argument(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def layer_table(m) -> dict:
    """{"model", "input_shape", "layers": [{name, module, group, kind, description, shape}],
    "limits": {feature: why not}}.

    Shapes are per item (no batch axis), measured with one patch of zeros of the input
    spec's shape.
    """
    from musiclens.core.models.discover import layer_shapes, probe_input

    x, _ = probe_input(m.input, m.patch_frames)
    shapes = layer_shapes(m)
    return {
        "model": m.name,
        "input_shape": list(x.shape[1:]),
        "limits": dict(m.limits),
        "layers": [
            {
                "name": info.name,
                "module": info.module,
                "group": info.group,
                "kind": info.kind,
                "description": info.description,
                "shape": list(shapes[info.name]),
            }
            for info in m.layers.values()
            if info.name in shapes
        ],
    }


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import print_json
    from musiclens.cli._model import load_model
    from musiclens.core.models.discover import input_axes

    m = load_model(args)
    table = layer_table(m)
    own = "family" not in m.architecture  # the user's own network: say what works with it
    if own:
        from musiclens.core.models.user_models import describe

        table["about"] = describe(m)
    if args.json:
        print_json(table)
        return 0
    axes = input_axes(m.input).replace("B, ", "")
    print(f"{table['model']}: input {tuple(table['input_shape'])} {axes}")
    if table["layers"]:
        width = max(len(row["name"]) for row in table["layers"])
        for row in table["layers"]:
            print(f"  {row['name']:<{width}}  {tuple(row['shape'])!s:<18} {row['kind']}")
    if not m.hooks_supported and not own:
        print(f"  no layers to inspect: {m.limits.get('layers', 'its layers cannot be hooked')}")
    for line in table.get("about", [])[1:]:
        print(f"  {line}")
    return 0
