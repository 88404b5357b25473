"""Train the bundled default MIDI model (``resources/models/midi_style_lstm``), reproducibly.

The corpus ships inside the ``music21`` package, so this runs offline::

    .venv/bin/pip install music21          # only this script needs it; musiclens never imports it
    .venv/bin/python packaging/train_default_midi_model.py --cache /tmp/midi_style_corpus

Stage 1 (``convert``) writes ``<cache>/<label>/*.mid`` from the music21 corpus:

* ``bach``: the Bach chorales (``corpus/bach/bwv*.mxl``, four-part MusicXML);
* ``folk``: tunes from Ryan's Mammoth Collection (1883, ABC; American/Irish fiddle tunes);
* ``palestrina``: Palestrina mass movements (Humdrum ``.krn``).

At most ``--per-class`` pieces per class are drawn with a fixed seed. music21 writes each
piece as a Standard MIDI File (120 bpm unless the score has a metronome mark).

Stage 3 (``statistics``) records the whole-piece statistics of the rendered corpus in
``model.json`` (``provenance["training_statistics"]``): ``midi-classify`` reports how far a
piece lies from them (``training_distance``), so a piece outside the model's scope says so.

Stage 2 (``train``) is exactly what a user's own folder goes through: musiclens reads the
``.mid`` files with :mod:`musiclens.core.midi`, splits them by file (seeded 80/10/10 per
class), trains the LSTM with :mod:`musiclens.core.training.midi` and saves weights + JSON, with
the held-out (test-split) accuracy and the class counts in ``provenance``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL_NAME = "midi_style_lstm"


def corpus_paths() -> dict[str, list[Path]]:
    from music21 import corpus

    paths = [Path(p) for p in corpus.getPaths()]

    def collection(name: str, suffix: str) -> list[Path]:
        return sorted(p for p in paths if p.parent.name == name and p.suffix == suffix)

    return {
        "bach": [p for p in collection("bach", ".mxl") if p.name.startswith("bwv")],
        "folk": collection("ryansMammoth", ".abc"),
        "palestrina": collection("palestrina", ".krn"),
    }


def convert(cache: Path, per_class: int, seed: int) -> None:
    from music21 import converter

    warnings.filterwarnings("ignore")
    rng = random.Random(seed)
    for label, paths in corpus_paths().items():
        chosen = sorted(rng.sample(paths, min(per_class, len(paths))))
        out_dir = cache / label
        out_dir.mkdir(parents=True, exist_ok=True)
        done = failed = 0
        t0 = time.time()
        for path in chosen:
            out = out_dir / (path.stem.replace(".", "_") + ".mid")
            if out.exists():
                done += 1
                continue
            try:
                score = converter.parse(str(path))
                score.write("midi", fp=str(out))
                done += 1
            except Exception as exc:  # noqa: BLE001 - a corpus piece music21 can't render
                failed += 1
                print(f"  skip {path.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"{label}: {done} MIDI files ({failed} failed) in {time.time() - t0:.0f} s", flush=True)


def train(cache: Path, out: Path, seed: int, epochs: int) -> None:
    import torch

    from musiclens.core.models.midi_lstm import NoteFeatureSpec, save_midi_model
    from musiclens.core.training.midi import load_folder, train_midi_lstm

    torch.manual_seed(seed)
    spec = NoteFeatureSpec(n_notes=100, short="pad", min_notes=16, drop_drums=True)
    data = None
    for progress in load_folder(cache, spec, seed=seed):
        data = progress.data or data
    assert data is not None
    print(data.summary(), flush=True)
    model = None
    for step in train_midi_lstm(data, hidden=168, layers=2, epochs=epochs, seed=seed, name=MODEL_NAME):
        if step.kind != "batch":
            print(step.line(), flush=True)
        model = step.model or model
    assert model is not None
    model.provenance.update(
        {
            "training_data": (
                "music21 corpus (pip package music21, shipped offline): Bach chorales "
                "(corpus/bach/bwv*.mxl), Ryan's Mammoth Collection 1883 (corpus/ryansMammoth/*.abc) "
                "as 'folk', Palestrina mass movements (corpus/palestrina/*.krn); rendered to MIDI "
                "by music21 and read by musiclens.core.midi"
            ),
            "training_script": "packaging/train_default_midi_model.py",
            "licence_note": "music21 corpus/license.txt: each piece keeps its own terms; the Bach, "
            "Ryan's Mammoth (1883) and Palestrina pieces are public-domain music.",
        }
    )
    save_midi_model(model, out)
    print(f"saved {out}: test accuracy {model.provenance['metrics']['test_accuracy']:.3f}")


def statistics(cache: Path, out: Path) -> None:
    """Record the whole-piece statistics of the rendered corpus in ``out/model.json``
    (``provenance["training_statistics"]``), so ``musiclens midi-classify`` and the piano roll
    can say when a piece lies outside what the model was trained on."""
    import json

    from musiclens.core.midi import read_midi
    from musiclens.core.models.inputs import piece_features
    from musiclens.core.models.midi_piece import training_statistics

    pieces = []
    for path in sorted(cache.glob("*/*.mid")):
        try:
            pieces.append(piece_features(read_midi(path)))
        except Exception as exc:  # noqa: BLE001 - a rendered piece the reader refuses: left out, said
            print(f"  skip {path.name}: {exc}", file=sys.stderr)
    meta_path = out / "model.json"
    meta = json.loads(meta_path.read_text())
    stats = training_statistics(pieces)
    stats["source"] = f"{len(pieces)} pieces of the training corpus rendered by stage 'convert' ({cache})"
    meta.setdefault("provenance", {})["training_statistics"] = stats
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{meta_path}: training statistics of {len(pieces)} pieces (distance p95 {stats['distance_p95']:.2f})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/midi_style_corpus"),
        help="folder for the rendered MIDI files (<cache>/<label>/*.mid)",
    )
    ap.add_argument("--out", type=Path, default=REPO / "resources" / "models" / MODEL_NAME)
    ap.add_argument("--per-class", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stage", choices=("all", "convert", "train", "statistics"), default="all")
    args = ap.parse_args(argv)
    if args.stage in ("all", "convert"):
        convert(args.cache, args.per_class, args.seed)
    if args.stage in ("all", "train"):
        train(args.cache, args.out, args.seed, args.epochs)
    if args.stage in ("all", "statistics"):
        statistics(args.cache, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
