"""The MIDI branch of the verbs that work on both input kinds (``saliency``, ``flip``): when
the input is a MIDI file, those commands hand their arguments to the functions here, which
run the MIDI model's own code (:mod:`musiclens.core.interpret.midi_saliency`, ``midi-flip``).

With the audio default model (``--model`` not given), a MIDI file gets the bundled MIDI model.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal


def is_midi_file(path) -> bool:
    from musiclens.core.midi import MIDI_EXTENSIONS

    return Path(str(path)).suffix.lower() in MIDI_EXTENSIONS


def midi_model_name(model: str | None) -> str:
    """The MIDI model to use: the one given, or the bundled MIDI model for the audio default."""
    from musiclens.core.resources import DEFAULT_MIDI_MODEL, DEFAULT_MODEL

    try:
        from musiclens.cli._interpret_common import DEFAULT_MODEL as CLI_DEFAULT
    except ImportError:  # pragma: no cover
        CLI_DEFAULT = DEFAULT_MODEL
    if model is None or model in (DEFAULT_MODEL, CLI_DEFAULT):
        return DEFAULT_MIDI_MODEL
    return model


def saliency(args: argparse.Namespace) -> int:
    """``musiclens saliency FILE.mid``: per-note attribution of a class on the notes the MIDI
    model reads (the first N; a whole-piece model: every note of every track), by the method
    :func:`~musiclens.core.analyses.midi.saliency_method` picks for the model (``gradient`` on
    a model that reads note statistics is its note presence: their plain gradient is 0).
    ``-o OUT.npz`` (``attribution`` (N, F), ``per_note``) or ``-o OUT.csv`` (one row per note);
    JSON with the per-note values and the top notes. A signed method's per-note value is the
    sum over the note's features (positive: the note speaks for the class), and its top notes
    are the most positive; an unsigned one's is the sum of magnitudes."""
    import numpy as np

    from musiclens.cli import print_json
    from musiclens.cli._output import prepare_output
    from musiclens.core.analyses.midi import saliency_method
    from musiclens.core.errors import ParameterError
    from musiclens.core.interpret import methods
    from musiclens.core.interpret import midi_saliency as ms
    from musiclens.core.models.midi_lstm import load_midi_model

    asked = methods.get(str(getattr(args, "method", "gradient") or "gradient"))
    if asked.name == "gradient" and getattr(args, "times_input", False):
        asked = methods.get("gradient-x-input")
    if "midi" not in asked.input_kinds:
        raise ParameterError(
            f"--method {asked.name} does not apply to MIDI models; MIDI saliency offers "
            + ", ".join(methods.names(kind="midi"))
        )
    out_path = getattr(args, "output", None)
    if out_path is not None and Path(out_path).suffix.lower() not in (".npz", ".csv"):
        raise ParameterError(f"for a MIDI file -o must end in .npz or .csv, got {out_path!r}")
    m = load_midi_model(midi_model_name(getattr(args, "model", None)), device=getattr(args, "device", "auto"))
    meth = methods.get(saliency_method(m, asked.name))  # the model's own per-note method for "gradient"
    method = meth.name
    notes = m.spec.read(args.file)
    feats, mask = m.spec.window(notes)
    x, mk = m.tensors(feats, mask)
    probs = m.predict(x, mk)[0].cpu().numpy()
    target = int(np.argmax(probs)) if getattr(args, "target", None) is None else m.label_index(args.target)
    score: Literal["logit", "probability"] = (
        "probability" if getattr(args, "output_score", "logit") == "probability" else "logit"
    )
    options: dict[str, Any] = {"output": score, "mask": mk}
    info: dict[str, Any] = {}
    if method == "integrated-gradients":
        options.update(steps=max(int(getattr(args, "steps", 256)), 256), info=info)
    attr = meth(m, x, target=target, **options)
    extra: dict[str, float] = {}
    if info:
        extra = {
            "score_at_input": float(info["score_at_input"][0]),
            "score_at_baseline": float(info["score_at_baseline"][0]),
            "completeness_error": float(info["completeness_error"][0]),
            "relative_error": float(info["relative_error"][0]),
        }
    k = int(mask.sum())
    a = attr[0].detach().cpu().numpy().astype(np.float32)[:k]
    signed = meth.shown_signed  # the table: keep the sign (for the class vs against it)
    per = ms.per_note(attr.detach(), how="sum" if signed else "l1")[0].cpu().numpy().astype(np.float32)[:k]
    order = np.argsort(-per, kind="stable")[:5]
    top = [
        {"index": int(i), "pitch": int(notes.pitch[i]), "start_s": float(notes.start[i]), "saliency": float(per[i])}
        for i in order
    ]
    summary = {
        "model": m.name,
        "file": str(args.file),
        "kind": "midi",
        "method": method,
        "method_asked": asked.name,
        "per_note_value": "sum over features, signed (positive: for the class)" if signed else "sum of magnitudes",
        "target": m.labels[target],
        "score": score,
        "probability": float(probs[target]),
        "n_notes": k,
        "shape": list(a.shape),
        "min": float(a.min()) if k else 0.0,
        "max": float(a.max()) if k else 0.0,
        "sum": float(a.astype(np.float64).sum()),
        "per_note": per.astype(float).tolist(),
        "top_notes": top,
        "output": out_path,
    }
    if extra:
        summary["integrated_gradients"] = extra
    if out_path is not None:
        prepare_output(out_path)
        if str(out_path).lower().endswith(".npz"):
            np.savez_compressed(
                out_path,
                attribution=a,
                per_note=per,
                features=feats[:k].astype(np.float32),
                method=np.array(method),
                target=np.array(m.labels[target]),
                model=np.array(m.name),
            )
        else:
            names = list(getattr(m.spec, "features", ("pitch", "step", "duration")))
            with open(out_path, "w", encoding="utf-8") as f:
                f.write(
                    "index,start_s,pitch,step_s,duration_s,saliency,"
                    + ",".join(f"d_{n}" for n in names[: a.shape[1]])
                    + "\n"
                )
                for i in range(k):
                    f.write(
                        f"{i},{notes.start[i]:.6f},{int(notes.pitch[i])},{feats[i, 1]:.6f},{feats[i, 2]:.6f},"
                        f"{per[i]:.6g}," + ",".join(f"{v:.6g}" for v in a[i]) + "\n"
                    )
    if getattr(args, "json", False):
        print_json(summary)
    else:
        which = f"all {k} notes" if k == len(notes) else f"the first {k} notes"
        swapped = f" (the model's own method for {asked.name})" if method != asked.name else ""
        print(
            f"{method} saliency{swapped} of {m.labels[target]!r} (p = {probs[target]:.3f}) on {which} of "
            f"{args.file}; most salient notes{' for the class' if signed else ''}: "
            + ", ".join(f"#{t['index']} (pitch {t['pitch']}, {t['start_s']:.2f} s)" for t in top)
            + (f"; wrote {out_path}" if out_path else "")
        )
    return 0


def flip(args: argparse.Namespace) -> int:
    """``musiclens flip FILE.mid --to CLASS -o OUT.mid``: ``musiclens midi-flip`` with the
    ``flip`` command's arguments (``--steps``, ``--lr``; the MIDI defaults otherwise)."""
    from musiclens.cli import midi_flip

    ns = argparse.Namespace(
        file=args.file,
        to=args.to,
        model=midi_model_name(getattr(args, "model", None)),
        output=args.output,
        steps=getattr(args, "steps", 300),
        lr=getattr(args, "lr", None),
        penalty=None,
        features=None,
        window_only=bool(getattr(args, "patch_only", False)),
        model_notes_only=False,
        json=getattr(args, "json", False),
        quiet=getattr(args, "quiet", False),
        device=getattr(args, "device", "auto"),
    )
    return midi_flip.run(ns)
