"""``musiclens train --data DIR --out MODEL_DIR [--arch ARCH] [--epochs N] [--task ...] [--json]``.

Audio or MIDI: the kind comes from the folder's files (``root/<label>/*.wav`` or
``root/<label>/*.mid``; a ``labels.csv`` or musdb stems folder is audio) and that kind's
default architecture is trained (audio: vanilla-cnn, MIDI: midi-lstm); ``--arch`` overrides.
Settings left out take the kind's defaults (MIDI: 30 epochs, lr 2e-3, weight decay 1e-4, no
early stopping; audio: 20 epochs, lr 1e-3, patience 5).

Transfer learning: ``--arch musicnn-probe --base MSD_musicnn --features tags|pooled|penultimate
[--head linear|mlp] [--l2 1e-3,1e-2,...] [--finetune K]`` fits a head on the frozen
pretrained MusiCNN (L2 chosen by track-grouped cross-validation on the training tracks);
``--epochs`` only matters with ``--finetune``.

Splits the folder by track/file (80/10/10, seeded), trains with early stopping on validation and
saves the best model as ``MODEL_DIR/{weights.safetensors,model.json}``; ``model.json`` records
which files were in each split (``musiclens evaluate`` reads it). Progress goes to
stderr; with ``--json`` stdout holds one document::

    {"arch", "kind", "classes", "split": {"train": n_tracks, "val": n, "test": n},
     "train_accuracy", "val_accuracy", "test_accuracy", "epochs_run", ...}

(multi-label ``--task instruments``: ``*_roc_auc`` and ``*_pr_auc`` instead of accuracies).

Several processes (audio architectures trained end to end): ``torchrun --nproc_per_node N -m
musiclens train ... --distributed`` trains with DistributedDataParallel (gloo on the CPU, NCCL
on GPUs), ``--batch-size`` being the global batch shared by the processes; only rank 0 prints
and writes (see :mod:`musiclens.core.training.distributed` and the README).
"""

from __future__ import annotations

import argparse
import sys


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.8,0.1,0.1, got {text!r}") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.8,0.1,0.1, got {text!r}")
    return parts


def register(subparsers: argparse._SubParsersAction) -> None:
    from musiclens.core.models.architectures import ARCHITECTURES, DEFAULT_ARCH

    p = subparsers.add_parser("train", help="train a model (audio or MIDI) on a labelled folder")
    kinds = ", ".join(f"{a.name} ({a.kind})" for a in ARCHITECTURES)
    p.add_argument(
        "--arch",
        default=None,
        choices=[a.name for a in ARCHITECTURES],
        metavar="ARCH",
        help=f"architecture: {kinds}; default: {DEFAULT_ARCH['audio']} for audio folders, "
        f"{DEFAULT_ARCH['midi']} for MIDI folders",
    )
    p.add_argument(
        "--data",
        required=True,
        help="dataset folder (root/<label>/*.wav, labels.csv, musdb stems, or root/<label>/*.mid)",
    )
    p.add_argument("--epochs", type=int, default=None, help="maximum number of epochs (default 20; MIDI 30)")
    p.add_argument("--out", required=True, help="model folder to write (weights.safetensors + model.json)")
    p.add_argument(
        "--task",
        default="genre",
        choices=["genre", "mood", "instruments"],
        help="audio: genre/mood: single-label folders; instruments: musdb-style stems, multi-label",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--batch-size", type=int, default=None, help="examples per step (default 32)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3; MIDI 2e-3)")
    p.add_argument("--weight-decay", type=float, default=None, help="weight decay (default 0; MIDI 1e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the weights and the shuffling")
    p.add_argument(
        "--patience",
        type=int,
        default=None,
        help="stop after this many epochs without a better validation score (0: never; default 5; MIDI: never)",
    )
    p.add_argument(
        "--split",
        type=_fractions,
        default=(0.8, 0.1, 0.1),
        metavar="TRAIN,VAL,TEST",
        help="track fractions (default 0.8,0.1,0.1)",
    )
    p.add_argument("--patch-seconds", type=float, default=None, help="override the patch length")
    p.add_argument(
        "--no-cache", action="store_true", help="compute the front end per batch instead of using the feature cache"
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="feature cache folder (default: $MUSICLENS_CACHE or $XDG_CACHE_HOME/musiclens)",
    )
    p.add_argument("--checkpoint", default=None, help="write a resumable checkpoint here after every epoch")
    p.add_argument("--resume", default=None, help="continue from this checkpoint folder")
    p.add_argument(
        "--filter-loss", type=float, default=0.0, help="masked-cnn: weight of Zhang et al.'s filter loss (0 = off)"
    )
    p.add_argument(
        "--filter-tau",
        type=float,
        default=None,
        help="masked-cnn: template scale of the filter loss (default Zhang's 0.5/(F·T))",
    )
    p.add_argument("--real-only", action="store_true", help="stft-cnn: real part only (1 channel)")
    p.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="dropout probability of the architecture's dropout layers (default: the architecture's own)",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="one process of a torchrun job (torchrun --nproc_per_node N -m musiclens train ... --distributed): "
        "DDP, gloo on the CPU, NCCL on GPUs; --batch-size is the global batch",
    )
    g = p.add_argument_group("musicnn-probe (transfer learning on a frozen pretrained MusiCNN)")
    g.add_argument(
        "--base",
        default=None,
        help="the pretrained MusiCNN: MSD_musicnn (default), MTT_musicnn or a MusiCNN model folder",
    )
    g.add_argument(
        "--features",
        default=None,
        choices=["tags", "pooled", "penultimate"],
        help="the representation the head reads: the 50 tag logits, the mid end pooled over "
        "time (max and mean, 1506), or the penultimate dense layer (200, default)",
    )
    g.add_argument(
        "--head",
        default=None,
        choices=["linear", "mlp"],
        help="logistic regression (linear, default) or a one-hidden-layer MLP",
    )
    g.add_argument(
        "--l2",
        default=None,
        metavar="A,B,...",
        help="L2 strengths tried by track-grouped cross-validation on the training tracks "
        "(default 1e-4,1e-3,1e-2,0.1,1,10; one value: no CV)",
    )
    g.add_argument("--cv-folds", type=int, default=None, help="cross-validation folds (default 5)")
    g.add_argument(
        "--finetune",
        type=int,
        default=None,
        help="after fitting the head, also train this many of the base's top blocks "
        "(0 = frozen, default; runs the base on every batch for --epochs)",
    )
    g = p.add_argument_group("midi-lstm (MIDI folders)")
    g.add_argument("--n-notes", type=int, default=None, help="notes the model reads from each piece (default 100)")
    g.add_argument(
        "--hidden",
        type=int,
        default=None,
        dest="hidden_units",
        help="hidden units: midi-lstm's LSTM (default 168) or musicnn-probe's MLP head (default 64)",
    )
    g.add_argument("--layers", type=int, default=None, help="LSTM layers (default 2)")
    from musiclens.cli._model import add_device_argument

    add_device_argument(p)  # the one --device of every command (auto: the GPU when one is present)
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musiclens.cli import print_json
    from musiclens.core import analyses
    from musiclens.core.errors import ParameterError
    from musiclens.core.training import entry
    from musiclens.core.training.data import FeatureCache
    from musiclens.core.training.events import PrepareProgress

    if args.epochs is not None and args.epochs < 1:
        raise ParameterError(f"--epochs must be >= 1, got {args.epochs}")
    arch, kind = entry.resolve_arch(args.data, args.arch)
    params: dict = {}
    if args.filter_tau is not None:
        if arch != "masked-cnn":
            raise ParameterError("--filter-tau is for --arch masked-cnn")
        params["filter_tau"] = args.filter_tau
    if args.real_only:
        if arch != "stft-cnn":
            raise ParameterError("--real-only is for --arch stft-cnn")
        params["real_only"] = True
    probe_args = {
        "base": args.base,
        "features": args.features,
        "head": args.head,
        "hidden": args.hidden_units if arch == "musicnn-probe" else None,
        "l2_grid": args.l2,
        "folds": args.cv_folds,
        "finetune": args.finetune,
    }
    given = [k for k, v in probe_args.items() if v is not None]
    if given and arch != "musicnn-probe":
        flags = {"l2_grid": "l2", "folds": "cv-folds"}
        raise ParameterError(f"--{flags.get(given[0], given[0])} is for --arch musicnn-probe")
    if args.l2 is not None:
        try:
            probe_args["l2_grid"] = tuple(float(v) for v in args.l2.split(","))
        except ValueError:
            raise ParameterError(f"--l2 takes numbers separated by commas, got {args.l2!r}") from None
    params.update({k: v for k, v in probe_args.items() if v is not None})
    if args.dropout is not None:
        if arch == "musicnn-probe":
            raise ParameterError("--dropout is not for musicnn-probe")
        if not 0.0 <= args.dropout < 1.0:
            raise ParameterError(f"--dropout must be in [0, 1), got {args.dropout}")
        params["dropout"] = args.dropout
    midi_args = {
        "n_notes": args.n_notes,
        "hidden": args.hidden_units if kind == "midi" else None,
        "layers": args.layers,
    }
    midi_given = [k for k, v in midi_args.items() if v is not None]
    if midi_given and kind != "midi":
        if midi_given[0] != "hidden":
            raise ParameterError(f"--{midi_given[0].replace('_', '-')} is for MIDI folders (--arch midi-lstm)")
        raise ParameterError("--hidden is for --arch midi-lstm or musicnn-probe")
    if kind == "midi":
        if args.task != "genre":
            raise ParameterError("--task is for audio folders; a MIDI folder's sub-folders are its labels")
        for flag, value in (
            ("--checkpoint", args.checkpoint),
            ("--resume", args.resume),
            ("--patch-seconds", args.patch_seconds),
        ):
            if value is not None:
                raise ParameterError(f"{flag} is for audio architectures, not {arch}")
        params.update({k: v for k, v in midi_args.items() if v is not None})
    cfg = entry.default_config(
        kind,
        arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        device=args.device,
        filter_loss=args.filter_loss or None,
        checkpoint_dir=args.checkpoint,
    )
    if args.patience is not None:
        cfg.patience = args.patience if args.patience > 0 else None
    cache = None if args.no_cache else FeatureCache(args.cache_dir) if args.cache_dir else "default"

    from musiclens.cli._progress import Progress

    main_process = True  # under torchrun only rank 0 prints progress and the result
    if args.distributed:
        import os

        main_process = os.environ.get("RANK", "0") == "0"
        if not main_process:
            args.quiet = True

    def say(text: str) -> None:
        if not args.quiet:
            print(f"train: {text}", file=sys.stderr, flush=True)

    if args.arch is None:
        say(f"{args.data} holds {kind} files: training {arch}")
    unit = "tracks prepared" if kind == "audio" else "files read"
    preparing = Progress("train", unit, quiet=args.quiet)
    batches = None  # one per epoch (its elapsed time and ETA are the epoch's)

    def show(ev) -> None:
        nonlocal batches
        if isinstance(ev, PrepareProgress):
            if ev.error:
                say(f"skipped {ev.track}: {ev.error}")
            preparing.update(ev.done, total=ev.total, detail=str(ev.track or ""))
            if ev.data is not None and hasattr(ev.data, "sets"):
                c = ev.data.counts()
                say("tracks (patches): " + ", ".join(f"{s} {c[s]['tracks']} ({c[s]['patches']})" for s in c))
            elif ev.data is not None:
                say(ev.data.summary())
        elif ev.kind == "batch":
            unit = f"batches of epoch {ev.epoch}/{ev.epochs}"
            if batches is None or batches.unit != unit:
                batches = Progress("train", unit, quiet=args.quiet)
            batches.update(ev.batch, total=ev.batches or None, detail="" if ev.loss is None else f"loss {ev.loss:.4f}")
        else:
            say(ev.line())

    # the window's training job (core.analyses), its events shown on stderr
    summary = analyses.run(
        analyses.train(
            args.data,
            args.out,
            arch,
            task=args.task,
            config=cfg,
            fractions=args.split,
            cache=cache,
            mode="audio" if args.no_cache else "features",
            patch_seconds=args.patch_seconds,
            resume=args.resume,
            model_params=params,
            distributed=args.distributed,
        ),
        show,
    ).summary
    if not main_process:
        return 0
    for item in summary.get("skipped", []):
        say(f"skipped {item['file']}: {item['reason']}")
    if args.json:
        print_json(summary)
        return 0
    if summary.get("multilabel"):
        print(
            f"{arch}: mean ROC-AUC train {_f(summary['train_roc_auc'])}, val "
            f"{_f(summary['val_roc_auc'])}, test {_f(summary['test_roc_auc'])}; "
            f"{summary['epochs_run']} epochs; saved to {args.out}"
        )
    else:
        print(
            f"{arch}: accuracy train {_f(summary['train_accuracy'])}, val {_f(summary['val_accuracy'])}, "
            f"test {_f(summary['test_accuracy'])} (chance {summary['chance']:.3f}); "
            f"{summary['epochs_run']} epochs; saved to {args.out}"
        )
    if "probe" in summary:
        pr = summary["probe"]
        print(
            f"  probe: {pr['head']} head on {pr['base']}'s {pr['features']}, L2 {pr['l2']:g} chosen by "
            f"{(pr.get('cv') or {}).get('folds', 0)}-fold CV on the training tracks; test track accuracy "
            f"{_f(summary.get('test_track_accuracy'))}"
        )
    return 0


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"
