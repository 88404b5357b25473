"""``musiclens batch FOLDER --model M --analyses tags,attribution:gradient --out DIR [--workers N]``.

Analyses every audio or MIDI file under FOLDER with one model and writes ``DIR/summary.parquet``
(one row per file, sorted by path: status, error, predicted class, confidence, top tags with
probabilities, per-analysis summary numbers) and the arrays in ``DIR/shards/*.npz``, referenced
from the table (``shard`` and ``<analysis>.key`` columns). Load it in one line::

    pandas.read_parquet("DIR/summary.parquet")        # or pyarrow.parquet.read_table(...)
    numpy.load("DIR/" + row["shard"])[row["attribution:gradient.key"]]

Analyses (comma-separated): ``tags`` (class or tag probabilities), ``activations:LAYER`` (the
layer's output per patch; MIDI models: per note), ``attribution:METHOD`` or ``attribution:METHOD@LAYER``
for layer methods (any method of the method table for the model's input kind; the target is
each file's top class). Files of the other kind than the model's are listed as ``skipped``;
files that cannot be read or analysed as ``error`` with the message, and the run goes on.

Running it again with the same ``--out`` resumes: finished files are skipped (``--retry-errors``
runs the failed ones again). ``--workers N`` runs N processes with one model each (one torch
thread each; on several GPUs one GPU per worker in turn); the table is the same as with one.
A file whose process dies (a crash, the out-of-memory killer) is logged as an error saying so,
and the other files go on.
"""

from __future__ import annotations

import argparse

from musiclens.cli._model import DEFAULT_MIDI_MODEL, DEFAULT_MODEL, add_model_argument, trust_code
from musiclens.cli._progress import add_quiet_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "batch",
        help="analyse every audio or MIDI file of a folder into summary.parquet (resumable, --workers)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", help="a folder; every audio and MIDI file under it is analysed")
    add_model_argument(
        p,
        default=None,
        help=f"bundled model name or model folder (default {DEFAULT_MODEL}; {DEFAULT_MIDI_MODEL} for a folder "
        "of MIDI files only)",
    )
    p.add_argument(
        "--analyses",
        default="tags",
        help="comma-separated: tags, activations:LAYER, attribution:METHOD[@LAYER]",
    )
    p.add_argument("--out", required=True, help="the output folder (summary.parquet, shards/)")
    p.add_argument("--workers", type=int, default=1, help="worker processes, one model each")
    p.add_argument("--top", type=int, default=5, help="top tags kept in the table per file")
    p.add_argument("--shard-files", type=int, default=32, help="files per array shard (and per resume commit)")
    p.add_argument("--retry-errors", action="store_true", help="analyse again the files that failed before")
    add_quiet_argument(p)
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from musiclens.cli import print_json
    from musiclens.cli._progress import Progress
    from musiclens.core import analyses
    from musiclens.core.analyses.batch import BatchProgress, batch
    from musiclens.core.errors import ParameterError

    if args.workers < 1:
        raise ParameterError(f"--workers must be at least 1, got {args.workers}")
    if args.top < 1:
        raise ParameterError(f"--top must be at least 1, got {args.top}")
    if args.shard_files < 1:
        raise ParameterError(f"--shard-files must be at least 1, got {args.shard_files}")
    progress = Progress("batch", "files", quiet=args.quiet)

    def show(step) -> None:
        if not isinstance(step, BatchProgress):
            return
        if step.done == 0:  # the start: how many files, how many done by an earlier run
            if step.status == "error" and not args.quiet:  # the file an earlier run died on
                print(f"batch: error {step.path}: {step.error}", file=sys.stderr, flush=True)
            before = f"{step.before} done before" if step.before else ""
            progress.update(0, total=step.total, detail=before, force=True)
            return
        if step.status != "ok" and not args.quiet:  # a bad file (or one of the other kind): logged, the run goes on
            print(f"batch: {step.status} {step.path}: {step.error}", file=sys.stderr, flush=True)
        progress.update(step.done, total=step.total, detail=_errors(step.errors))

    model = args.model or default_model(args.folder)
    summary = analyses.run(
        batch(
            args.folder,
            model,
            args.analyses,
            args.out,
            workers=args.workers,
            device=args.device,
            top=args.top,
            shard_files=args.shard_files,
            retry_errors=args.retry_errors,
            trust_code=trust_code(args),
        ),
        show,
    )
    if args.json:
        print_json(summary.to_dict())
        return 0
    print(
        f"wrote {summary.table}: {summary.ok + summary.errors + summary.skipped} files "
        f"({summary.ok} ok, {_errors(summary.errors) or '0 errors'}, {summary.skipped} skipped); "
        f"this run {summary.analysed} files in {summary.seconds:.1f} s ({summary.files_per_s:.2f} files/s, "
        f"{summary.workers} worker{'s' if summary.workers != 1 else ''})"
        + (f", {summary.previously_done} done before" if summary.previously_done else "")
    )
    return 0


def default_model(folder) -> str:
    """The bundled MIDI model for a folder of MIDI files only, else the bundled audio model."""
    from musiclens.core.analyses.batch import file_kind, find_files

    kinds = {file_kind(p) for p in find_files(folder)}
    return DEFAULT_MIDI_MODEL if kinds == {"midi"} else DEFAULT_MODEL


def _errors(n: int) -> str:
    return "" if not n else f"{n} error{'s' if n != 1 else ''}"
