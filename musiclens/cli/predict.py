"""``musiclens predict FILE --model MODEL_DIR [--json]``: per-patch and whole-file probabilities.

The whole-file probabilities are the mean over the patches (non-overlapping, the trailing
partial patch dropped). Single-label models also report the ``prediction`` (argmax);
multi-label models the labels whose probability is >= ``--threshold``.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="class probabilities of an audio file")
    p.add_argument("file", help="an audio file (wav, flac, ogg, mp3, aiff)")
    p.add_argument("--model", required=True, help="model folder or bundled model name")
    p.add_argument("--threshold", type=float, default=0.5, help="multi-label decision threshold")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import print_json
    from musiclens.core.errors import ParameterError
    from musiclens.core.models import registry
    from musiclens.core.tagging import tag_file

    if not 0 < args.threshold < 1:
        raise ParameterError(f"--threshold must be between 0 and 1, got {args.threshold}")
    m = registry.load(args.model)
    tg = tag_file(args.file, m)
    mean = tg.mean()
    whole = {lab: float(v) for lab, v in zip(m.labels, mean)}
    if m.multilabel:
        decision = [lab for lab, v in whole.items() if v >= args.threshold]
    else:
        decision = m.labels[int(mean.argmax())]
    out = {"model": m.name, "file": str(args.file), "labels": list(m.labels), "multilabel": m.multilabel,
           "patch_seconds": tg.patch_seconds, "patch_starts_s": tg.patch_starts_s.astype(float).tolist(),
           "patches": tg.probabilities.astype(float).tolist(), "file_probabilities": whole,
           "prediction": decision}
    if args.json:
        print_json(out)
        return 0
    print(f"{args.file}: {len(tg.probabilities)} patches of {tg.patch_seconds:.2f} s, {m.name}")
    for lab, v in tg.top():
        print(f"  {v:6.3f}  {lab}")
    print(f"prediction: {decision if isinstance(decision, str) else ', '.join(decision) or '(none)'}")
    return 0
