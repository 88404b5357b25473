"""Batch analysis of a whole folder: ``musiclens batch`` (and File > Open batch results).

:func:`batch` runs the analyses of a :class:`AnalysisSpec` list (``tags``,
``activations:LAYER``, ``attribution:METHOD[@LAYER]``) on every audio or MIDI file under a
folder with one model, and writes into an output folder ``DIR``:

* ``DIR/summary.parquet`` — one row per file, sorted by ``path`` (relative to the folder):
  ``path, kind, status ("ok" | "error" | "skipped"), error, duration_s, patches, n_notes,
  shard``; for ``tags``: ``predicted, confidence, top_tags, top_probabilities, probabilities``
  (the file's mean probability of every class, in the order of the metadata's ``labels``);
  for ``activations:L``: ``activations:L.energy`` (mean square), ``.mean``, ``.shape``; for
  ``attribution:M``: ``attribution:M.target`` (the file's top class), ``.mean``, ``.max``,
  ``.entropy`` (Shannon entropy of |map| / Σ|map|, divided by log(size): 1 = spread evenly,
  near 0 = concentrated), and for every analysis a ``<analysis>.key``. The schema metadata
  ``musiclens`` (JSON) holds the model, its labels, the analyses and the folder.
  ``pyarrow.parquet.read_table(DIR/"summary.parquet")`` or ``pandas.read_parquet`` reads it.
* ``DIR/shards/shard-NNNNN.npz`` — the arrays, a few dozen files per shard:
  ``np.load(DIR / row["shard"])[row["<analysis>.key"]]`` (:func:`read_array`): ``tags`` the
  taggram (P, L) (MIDI: the probabilities (L,)); ``activations:L`` the layer's output per
  patch (P, ...) (MIDI: of the model's window, a per-note layer cut to the notes read, e.g.
  an LSTM's (notes, 168)); ``attribution:M`` the map over the file (F, P × patch frames), as the
  window draws it (MIDI: (notes, 3)). All float32.
* ``DIR/rows.jsonl`` and ``DIR/batch.json`` — the finished rows and the run's settings: a
  rerun with the same settings skips the files already done (resume); a shard and its rows
  are committed together every ``shard_files`` files, so an interrupted run loses at most
  one shard's work.

Memory stays constant however many files: each file's arrays go to the open shard as soon
as they are computed. With ``workers > 1`` the files run in a pool of spawned processes
(:func:`_in_pool`), one model per process, one torch thread each (the one-worker run uses
one thread too), every file seeded alike; results are taken in path order, so the table and
the shards are the same whatever the number of workers.

A process that dies on a file (a crash in native code, the out-of-memory killer) fails only
that file: its row says how the process died and the run goes on (workers: a new worker
takes its place; one worker: the next run finds the file in ``DIR/RUNNING`` and logs it
instead of dying on it again). ``--retry-errors`` tries such files again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
import zipfile
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.progress import Cancel, Progress, is_cancelled

__all__ = [
    "AnalysisSpec",
    "BatchProgress",
    "BatchSummary",
    "BatchTable",
    "analyse_file",
    "batch",
    "find_files",
    "parse_analyses",
    "read_array",
    "read_table",
    "write_table",
]

TABLE = "summary.parquet"
ROWS = "rows.jsonl"
SETTINGS = "batch.json"
RUNNING = "RUNNING"  # the file a one-worker run is analysing
SHARDS = "shards"
ANALYSIS_KINDS = ("tags", "activations", "attribution")

#: one file's result: its table row and its arrays (name -> array)
FileResult = tuple[dict[str, Any], dict[str, np.ndarray]]


# ------------------------------------------------------------------ what to compute
@dataclass(frozen=True)
class AnalysisSpec:
    """One analysis of a batch: ``tags``, ``activations`` of ``layer``, or ``attribution`` by
    ``method`` (the method table's canonical name) at ``layer`` for layer methods."""

    kind: str
    method: str | None = None
    layer: str | None = None

    @property
    def name(self) -> str:
        """The spelling on the command line, also the prefix of its columns."""
        if self.kind == "tags":
            return "tags"
        if self.kind == "activations":
            return f"activations:{self.layer}"
        return f"attribution:{self.method}" + (f"@{self.layer}" if self.layer else "")


def parse_analyses(text: str | Sequence[str]) -> list[AnalysisSpec]:
    """``"tags,activations:LAYER,attribution:METHOD[@LAYER]"`` (or a list of those items) ->
    specs, duplicates dropped; method names are the method table's (old spellings work)."""
    from musiclens.core.interpret import methods

    items = text.split(",") if isinstance(text, str) else list(text)
    specs: list[AnalysisSpec] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        kind, _, arg = item.partition(":")
        kind, arg = kind.strip(), arg.strip()
        if kind == "tags" and not arg:
            spec = AnalysisSpec("tags")
        elif kind == "activations" and arg:
            spec = AnalysisSpec("activations", layer=arg)
        elif kind == "attribution" and arg:
            method, _, layer = arg.partition("@")
            meth = methods.get(method.strip())
            spec = AnalysisSpec("attribution", method=meth.name, layer=layer.strip() or None)
        else:
            raise ParameterError(
                f"unknown analysis {item!r}; give tags, activations:LAYER or attribution:METHOD[@LAYER] "
                f"(methods: {', '.join(methods.names())})"
            )
        if spec not in specs:
            specs.append(spec)
    if not specs:
        raise ParameterError("no analyses given; e.g. --analyses tags,attribution:gradient")
    return specs


def check_analyses(model: Any, specs: Sequence[AnalysisSpec]) -> None:
    """Raise :class:`ParameterError` for an analysis the model cannot run (before any file)."""
    from musiclens.core.interpret import methods

    kind = methods.input_kind(model)
    for spec in specs:
        if spec.kind == "activations":
            if kind not in ("audio", "midi"):
                raise ParameterError(f"activations:LAYER is for audio and MIDI models; {model.name} reads {kind}")
            if spec.layer not in model.layers and spec.layer not in dict(model.net.named_modules()):
                raise ParameterError(
                    f"model {model.name!r} has no layer {spec.layer!r}; layers are: {', '.join(model.layers)}"
                )
        elif spec.kind == "attribution":
            meth = methods.get(str(spec.method))
            if not meth.supports(kind):
                raise ParameterError(
                    f"{meth.name} works on {', '.join(meth.input_kinds)} models, not on {model.name} ({kind}); "
                    f"for {kind}: {', '.join(methods.names(kind=kind))}"
                )
            if meth.needs_layer and spec.layer is None:
                raise ParameterError(f"{meth.name} needs a layer: attribution:{meth.name}@LAYER")
            if spec.layer is not None and not meth.needs_layer:
                raise ParameterError(f"{meth.name} is an input method; it takes no @LAYER")
            if spec.layer is not None and spec.layer not in model.layers:
                raise ParameterError(
                    f"model {model.name!r} has no layer {spec.layer!r}; layers are: {', '.join(model.layers)}"
                )


# ------------------------------------------------------------------ one file
def file_kind(path: str | Path) -> str | None:
    """``"audio"``, ``"midi"`` or None (not a file a batch reads), by the extension."""
    from musiclens.core.audio import AUDIO_EXTENSIONS
    from musiclens.core.midi import MIDI_EXTENSIONS

    suffix = Path(path).suffix.lower()
    if suffix in MIDI_EXTENSIONS:
        return "midi"
    if suffix in AUDIO_EXTENSIONS:
        return "audio"
    return None


def find_files(folder: str | Path, *, exclude: Iterable[str | Path] = ()) -> list[Path]:
    """Every audio or MIDI file under ``folder`` (hidden files and folders, and the folders
    in ``exclude``, left out), sorted by their path relative to ``folder``."""
    root = Path(folder)
    if not root.is_dir():
        raise ParameterError(f"{folder} is not a folder")
    skip = {Path(p).resolve() for p in exclude}
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and (here / d).resolve() not in skip]
        found += [here / f for f in filenames if not f.startswith(".") and file_kind(f) is not None]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, MusicLensError) else f"{type(exc).__name__}: {text}"


def map_stats(values: np.ndarray) -> dict[str, float]:
    """``mean``, ``max`` and the normalised ``entropy`` of |values| (see the module docstring)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"mean": float("nan"), "max": float("nan"), "entropy": float("nan")}
    w = np.abs(a).ravel()
    total = float(w.sum())
    entropy = 0.0
    if total > 0 and w.size > 1:
        p = w[w > 0] / total
        entropy = float(-(p * np.log(p)).sum() / np.log(w.size))
    return {"mean": float(a.mean()), "max": float(a.max()), "entropy": entropy}


def analyse_file(model: Any, path: str | Path, rel: str, specs: Sequence[AnalysisSpec], *, top: int = 5) -> FileResult:
    """Run ``specs`` on one file -> (its table row, its arrays). Never raises for the file's
    own problems: a file that cannot be read or analysed gets status ``"error"`` and the
    message; a file of the other kind than the model's (MIDI with an audio model, …)
    ``"skipped"``. The global torch seed is set first, so random methods (SmoothGrad) give
    the same map in any process and any order."""
    import torch

    from musiclens.core.interpret import methods

    kind = file_kind(path) or "audio"
    row: dict[str, Any] = {"path": rel, "kind": kind, "status": "ok", "error": None}
    model_kind = methods.input_kind(model)
    if (kind == "midi") != (model_kind == "midi"):
        row.update(status="skipped", error=f"a {kind} file; {model.name} reads {model_kind}")
        return row, {}
    torch.manual_seed(0)
    try:
        if kind == "midi":
            arrays = _analyse_midi(model, Path(path), specs, row, top)
        else:
            arrays = _analyse_audio(model, Path(path), specs, row, top)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a bad file is reported in its row and the run goes on
        row = {"path": rel, "kind": kind, "status": "error", "error": _one_line(exc)}
        arrays = {}
    return row, arrays


def _tag_columns(labels: Sequence[str], probabilities: np.ndarray, top: int) -> dict[str, Any]:
    p = np.asarray(probabilities, dtype=np.float64)
    order = np.argsort(-p, kind="stable")[: max(1, top)]
    return {
        "predicted": labels[int(order[0])],
        "confidence": float(p[order[0]]),
        "top_tags": [labels[int(i)] for i in order],
        "top_probabilities": [float(p[i]) for i in order],
        "probabilities": [float(v) for v in p],
    }


def _analyse_audio(
    model: Any, path: Path, specs: Sequence[AnalysisSpec], row: dict[str, Any], top: int
) -> dict[str, np.ndarray]:
    from musiclens.core.analyses import run
    from musiclens.core.analyses.attribution import attribution_over_file
    from musiclens.core.analyses.predict import predict
    from musiclens.core.tagging import audio_to_patches, layer_outputs, load_audio_for

    y = load_audio_for(model, path)
    row["duration_s"] = len(y) / model.front_end.sample_rate
    analysis = predict(model, y)
    mean = analysis.mean()
    row["patches"] = len(analysis.probabilities)
    target = model.labels[int(np.argmax(mean))]  # ties: the first, as the window's ranking
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.kind == "tags":
            row |= _tag_columns(model.labels, mean, top)
            arrays[spec.name] = analysis.probabilities.astype(np.float32)
        elif spec.kind == "activations":
            layer = str(spec.layer)
            acts = layer_outputs(model, audio_to_patches(model, y), [layer])[layer].numpy().astype(np.float32)
            _activation_columns(row, spec.name, acts)
            arrays[spec.name] = acts
        else:
            attribution = run(attribution_over_file(model, y, str(spec.method), target, layer=spec.layer))
            values = np.asarray(attribution.values, dtype=np.float32)
            row[f"{spec.name}.target"] = target
            row |= {f"{spec.name}.{k}": v for k, v in map_stats(values).items()}
            arrays[spec.name] = values
    return arrays


def _activation_columns(row: dict[str, Any], name: str, acts: np.ndarray) -> None:
    """``<name>.energy`` (mean square), ``.mean`` and ``.shape`` of an activation array."""
    a64 = acts.astype(np.float64)
    row[f"{name}.energy"] = float((a64**2).mean()) if a64.size else float("nan")
    row[f"{name}.mean"] = float(a64.mean()) if a64.size else float("nan")
    row[f"{name}.shape"] = list(acts.shape)


def _midi_activations(model: Any, notes: Any, layer: str, k: int) -> np.ndarray:
    """A MIDI model's ``layer`` output for its window of ``notes`` -> float32, the batch axis
    dropped: a per-note layer (its first axis the window's length, e.g. an LSTM's (N, 168))
    cut to the ``k`` notes read (the padding after them is not the piece), others as they are
    (e.g. the output layer's (L,))."""
    import torch

    from musiclens.core.interpret.hooks import capture

    feats, mask = model.spec.window(notes)
    x, m = model.tensors(feats, mask)
    with torch.no_grad(), capture(model, layer) as acts:
        model.logits(x, m)
    a = acts[layer][0].float().cpu().numpy()
    if a.ndim >= 1 and a.shape[0] == len(mask):
        a = a[:k]
    return np.ascontiguousarray(a, dtype=np.float32)


def _analyse_midi(
    model: Any, path: Path, specs: Sequence[AnalysisSpec], row: dict[str, Any], top: int
) -> dict[str, np.ndarray]:
    from musiclens.core.analyses.midi import classify_notes, open_midi

    opened = open_midi(model, path)  # the file is read once; every analysis uses its notes
    first = model.classify_notes(opened.notes)
    probabilities = np.array([first["probabilities"][lab] for lab in model.labels], dtype=np.float64)
    k = row["n_notes"] = int(first["notes_used"])
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.kind == "tags":
            row |= _tag_columns(model.labels, probabilities, top)
            arrays[spec.name] = probabilities.astype(np.float32)
        elif spec.kind == "activations":
            acts = _midi_activations(model, opened.notes, str(spec.layer), k)
            _activation_columns(row, spec.name, acts)
            arrays[spec.name] = acts
        elif spec.kind == "attribution":
            classified = classify_notes(model, opened.notes, method=str(spec.method))
            values = np.asarray(classified.saliency, dtype=np.float32)
            row[f"{spec.name}.target"] = model.labels[classified.target]
            row |= {f"{spec.name}.{k}": v for k, v in map_stats(values).items()}
            arrays[spec.name] = values
    return arrays


# ------------------------------------------------------------------ the output folder
def _columns(specs: Sequence[AnalysisSpec]) -> list[tuple[str, str]]:
    """(column, type) of the table: type one of str, float, int, list[str], list[float], list[int]."""
    cols = [
        ("path", "str"),
        ("kind", "str"),
        ("status", "str"),
        ("error", "str"),
        ("duration_s", "float"),
        ("patches", "int"),
        ("n_notes", "int"),
        ("shard", "str"),
    ]
    for spec in specs:
        if spec.kind == "tags":
            cols += [
                ("predicted", "str"),
                ("confidence", "float"),
                ("top_tags", "list[str]"),
                ("top_probabilities", "list[float]"),
                ("probabilities", "list[float]"),
            ]
        elif spec.kind == "activations":
            cols += [
                (f"{spec.name}.{k}", t) for k, t in (("energy", "float"), ("mean", "float"), ("shape", "list[int]"))
            ]
        else:
            cols += [(f"{spec.name}.target", "str")]
            cols += [(f"{spec.name}.{k}", "float") for k in ("mean", "max", "entropy")]
        cols.append((f"{spec.name}.key", "str"))
    return cols


def _file_id(rel: str) -> str:
    return hashlib.sha1(rel.encode("utf-8")).hexdigest()[:16]


class _Store:
    """The output folder's rows and shards: arrays are written to the open shard as they come
    (``*.npz.part``, a zip of .npy entries); every ``shard_files`` rows the shard is closed,
    renamed and its rows appended to ``rows.jsonl`` (the commit a rerun resumes from)."""

    def __init__(self, out: Path, shard_files: int) -> None:
        self.out, self.shard_files = out, max(1, int(shard_files))
        self.shards = out / SHARDS
        self.shards.mkdir(parents=True, exist_ok=True)
        for part in self.shards.glob("*.part"):  # an interrupted run's uncommitted shard
            part.unlink()
        numbers = [int(p.stem.split("-")[-1]) for p in self.shards.glob("shard-*.npz") if p.stem[6:].isdigit()]
        self.index = max(numbers, default=-1) + 1
        rows = out / ROWS
        if rows.exists() and rows.stat().st_size:  # a line cut short by a crash: end it, the next row starts anew
            with open(rows, "rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
        self.pending: list[dict[str, Any]] = []
        self.zip: zipfile.ZipFile | None = None

    @property
    def shard_name(self) -> str:
        return f"{SHARDS}/shard-{self.index:05d}.npz"

    def add(self, row: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        if arrays:
            if self.zip is None:
                self.zip = zipfile.ZipFile(self.out / (self.shard_name + ".part"), "w", zipfile.ZIP_STORED)
            fid = _file_id(str(row["path"]))
            for name, array in arrays.items():
                key = f"{fid}/{name}"
                with self.zip.open(key + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)
                row[f"{name}.key"] = key
            row["shard"] = self.shard_name
        self.pending.append(row)
        if len(self.pending) >= self.shard_files:
            self.commit()

    def commit(self) -> None:
        if self.zip is not None:
            self.zip.close()
            self.zip = None
            os.replace(self.out / (self.shard_name + ".part"), self.out / self.shard_name)
            self.index += 1
        if self.pending:
            with open(self.out / ROWS, "a", encoding="utf-8") as f:
                for row in self.pending:
                    f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.pending.clear()


def read_rows(out: str | Path) -> dict[str, dict[str, Any]]:
    """The committed rows of an output folder: path -> row (a retried file's last row); a line
    cut short by a crash is ignored (its file runs again)."""
    rows: dict[str, dict[str, Any]] = {}
    p = Path(out) / ROWS
    if not p.exists():
        return rows
    with open(p, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "path" in row:
                rows[str(row["path"])] = row
    return rows


def write_table(out: str | Path, specs: Sequence[AnalysisSpec], metadata: dict[str, Any]) -> Path:
    """``out/summary.parquet`` from the committed rows, sorted by path (written to a temporary
    file first, then renamed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {
        "str": pa.string(),
        "float": pa.float64(),
        "int": pa.int64(),
        "list[str]": pa.list_(pa.string()),
        "list[float]": pa.list_(pa.float64()),
        "list[int]": pa.list_(pa.int64()),
    }
    cols = _columns(specs)
    schema = pa.schema([pa.field(name, types[t]) for name, t in cols])
    rows = read_rows(out)
    ordered = [rows[k] for k in sorted(rows)]
    table = pa.Table.from_pylist(ordered, schema=schema)
    table = table.replace_schema_metadata({"musiclens": json.dumps(metadata)})
    final = Path(out) / TABLE
    tmp = final.with_name(final.name + ".part")
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    return final


@dataclass
class BatchTable:
    """A summary.parquet read back for display: column names, rows (lists of Python values,
    in path order) and the run's metadata (model, labels, analyses, folder)."""

    path: Path
    columns: list[str]
    rows: list[list[Any]]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return Path(str(self.metadata.get("folder", self.path.parent)))

    def file(self, i: int) -> Path:
        """The analysed file of row ``i``."""
        return self.folder / str(self.rows[i][self.columns.index("path")])


def read_table(path: str | Path, *, lists: bool = True) -> BatchTable:
    """Read ``summary.parquet`` (or the output folder holding it) -> :class:`BatchTable`;
    ``lists=False`` leaves out the list columns (top tags, probabilities: what a table view
    does not show; about 4x faster on a 50-tag model's table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    if p.is_dir():
        p = p / TABLE
    if not p.exists():
        raise MusicLensError(f"{p} does not exist; give a summary.parquet written by `musiclens batch`")
    try:
        schema = pq.read_schema(p)
        wanted = [f.name for f in schema if lists or not pa.types.is_list(f.type)]
        table = pq.read_table(p, columns=wanted)
    except Exception as exc:  # noqa: BLE001 - pyarrow's many error types: one message
        raise MusicLensError(f"{p} is not a readable parquet table ({_one_line(exc)})") from None
    raw = (schema.metadata or {}).get(b"musiclens", b"{}")
    try:
        metadata = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        metadata = {}
    columns = list(table.column_names)
    data = [table.column(c).to_pylist() for c in columns]
    rows = [list(r) for r in zip(*data)] if columns else []
    return BatchTable(p, columns, rows, metadata if isinstance(metadata, dict) else {})


def read_array(out: str | Path, row: dict[str, Any], analysis: str) -> np.ndarray:
    """The array of ``analysis`` (e.g. ``"tags"``, ``"attribution:gradient"``) of a table row
    (a dict, e.g. ``table.to_pylist()[i]`` or a pandas row)."""
    key, shard = row.get(f"{analysis}.key"), row.get("shard")
    if not key or not shard:
        raise MusicLensError(f"{row.get('path')}: no {analysis} array (status {row.get('status')})")
    with np.load(Path(out) / str(shard)) as npz:
        array: np.ndarray = npz[str(key)]
    return array


# ------------------------------------------------------------------ the run
@dataclass(kw_only=True)
class BatchProgress(Progress):
    """A step of a batch: ``done`` of ``total`` files of this run (the files already done
    before are not counted), ``errors`` so far, the file just finished."""

    done: int = 0
    total: int = 0
    errors: int = 0
    before: int = 0  # files finished by an earlier run (skipped by this one)
    path: str = ""
    status: str = ""  # the file's: "ok", "error" or "skipped"
    error: str = ""  # why, when not "ok"


@dataclass
class BatchSummary:
    """What a batch run did (the command's JSON)."""

    out: str
    table: str | None
    files: int  # audio and MIDI files under the folder
    analysed: int  # in this run
    previously_done: int  # skipped: finished by an earlier run
    ok: int  # rows of the whole table
    errors: int
    skipped: int
    seconds: float
    files_per_s: float
    workers: int
    cancelled: bool = False
    first_s: float = 0.0  # from the start to the first file's result (workers: start-up included)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _specs(analyses: str | Sequence[str] | Sequence[AnalysisSpec]) -> list[AnalysisSpec]:
    if isinstance(analyses, str):
        return parse_analyses(analyses)
    given = [s for s in analyses if isinstance(s, AnalysisSpec)]
    if len(given) == len(analyses):
        return given
    return parse_analyses([s if isinstance(s, str) else s.name for s in analyses])


def _model_ref(model: Any) -> str:
    """How a worker (and the window) loads the model again: a bundled name or a folder."""
    from musiclens.core.resources import bundled_models_dir

    source = getattr(model, "source", None)
    if not source:
        return str(model.name)
    folder = Path(source).resolve()
    return folder.name if folder.parent == bundled_models_dir().resolve() else str(folder)


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    p = out / SETTINGS
    if p.exists():
        try:
            before = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            before = None
        if isinstance(before, dict):
            changed = [k for k in ("model", "analyses", "folder", "top") if before.get(k) != settings.get(k)]
            if changed:
                raise ParameterError(
                    f"{out} holds a batch run with another {', '.join(changed)} "
                    f"({', '.join(f'{k}={before.get(k)!r}' for k in changed)}); give another --out to start afresh"
                )
    out.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")


def batch(
    folder: str | Path,
    model: Any,
    analyses: str | Sequence[str] | Sequence[AnalysisSpec],
    out: str | Path,
    *,
    workers: int = 1,
    device: str = "auto",
    top: int = 5,
    shard_files: int = 32,
    retry_errors: bool = False,
    cancel: Cancel = None,
    trust_code: bool = False,
) -> Generator[BatchProgress, None, BatchSummary]:
    """Run ``analyses`` on every audio or MIDI file under ``folder`` with ``model`` (a bundled
    name, a model folder, or a LoadedModel; workers load it by its name or folder) and write
    the results to ``out`` (the module docstring). Resumes: files with a committed row are
    skipped (errors too, unless ``retry_errors``). Yields a :class:`BatchProgress` per file;
    returns :class:`BatchSummary`. ``cancel`` (or closing the generator) stops after the
    current file, keeping what is done. ``trust_code``: a model folder's own Python code may
    run (here and in the workers)."""
    from musiclens.core.models import registry

    root, out_dir = Path(folder).resolve(), Path(out).resolve()
    workers = max(1, int(workers))
    loaded_here = isinstance(model, (str, os.PathLike))
    if loaded_here:
        model = registry.load(model, device=device, trust_code=trust_code)
    specs = _specs(analyses)
    check_analyses(model, specs)
    ref = _model_ref(model)
    if workers > 1 and not getattr(model, "source", None):
        raise ParameterError("--workers > 1 needs a model folder or a bundled model (each worker loads it)")
    metadata = {
        "model": ref,
        "model_name": model.name,
        "labels": list(model.labels),
        "kind": getattr(model, "kind", "audio"),
        "analyses": [s.name for s in specs],
        "folder": str(root),
        "top": int(top),
    }
    if workers > 1 and loaded_here:
        model = None  # each worker loads its own: the parent keeps no copy (peak memory)
    files = find_files(root, exclude=[out_dir])
    _check_settings(out_dir, {k: metadata[k] for k in ("model", "analyses", "folder", "top")})
    store = _Store(out_dir, shard_files)
    crashed = _crashed_before(out_dir, root, set(read_rows(out_dir)))
    if crashed is not None:
        store.add(*crashed)
        store.commit()
    done_rows = read_rows(out_dir)
    finished = {p for p, r in done_rows.items() if not (retry_errors and r.get("status") == "error")}
    pending = [(p, p.relative_to(root).as_posix()) for p in files]
    previously = sum(rel in finished for _, rel in pending)
    pending = [(p, rel) for p, rel in pending if rel not in finished]
    total = len(pending)
    start = time.monotonic()
    yield BatchProgress(
        fraction=0.0 if total else 1.0,
        message=f"batch: {total} files to analyse" + (f" ({previously} done before)" if previously else ""),
        total=total,
        before=previously,
        **({"path": crashed[0]["path"], "status": "error", "error": crashed[0]["error"]} if crashed else {}),
    )
    results: Iterator[FileResult] = (
        _in_process(model, specs, top, pending, out_dir)
        if workers == 1
        else _in_pool(ref, device, specs, top, pending, workers, trust_code=trust_code)
    )
    done = errors = 0
    cancelled = False
    first = 0.0
    try:
        for row, arrays in results:
            store.add(row, arrays)
            done += 1
            first = first or time.monotonic() - start
            errors += row["status"] == "error"
            yield BatchProgress(
                fraction=done / total,
                message=f"batch: {done}/{total} files, {row['path']}"
                + (f" ({row['status']}: {row['error']})" if row["status"] != "ok" else ""),
                done=done,
                total=total,
                errors=errors,
                before=previously,
                path=str(row["path"]),
                status=str(row["status"]),
                error=str(row["error"] or ""),
            )
            if is_cancelled(cancel):
                cancelled = done < total
                break
    finally:
        store.commit()
        close = getattr(results, "close", None)
        if close is not None:
            close()
    table = write_table(out_dir, specs, metadata)
    rows = read_rows(out_dir)
    statuses = [r.get("status") for r in rows.values()]
    seconds = time.monotonic() - start
    return BatchSummary(
        out=str(out_dir),
        table=str(table),
        files=len(files),
        analysed=done,
        previously_done=previously,
        ok=statuses.count("ok"),
        errors=statuses.count("error"),
        skipped=statuses.count("skipped"),
        seconds=seconds,
        files_per_s=done / seconds if seconds > 0 else 0.0,
        workers=workers,
        cancelled=cancelled,
        first_s=first,
    )


def _in_process(
    model: Any, specs: Sequence[AnalysisSpec], top: int, pending: Sequence[tuple[Path, str]], out: Path
) -> Generator[FileResult, None, None]:
    """The files one after another in this process, on one torch thread (as each worker).
    The file being analysed is named in ``out/RUNNING`` until its result is taken: if the
    process dies on it (a crash in native code, the out-of-memory killer), the next run logs
    that file as failed instead of dying on it again (:func:`_crashed_before`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    marker = out / RUNNING
    try:
        for path, rel in pending:
            marker.write_text(rel, encoding="utf-8")
            _crash_for_tests(str(path))
            result = analyse_file(model, path, rel, specs, top=top)
            marker.unlink(missing_ok=True)
            yield result
    finally:
        marker.unlink(missing_ok=True)
        torch.set_num_threads(threads)


def _crashed_before(out: Path, root: Path, finished: set[str]) -> FileResult | None:
    """The failed row of the file an earlier one-worker run died on (``out/RUNNING``), if any."""
    marker = out / RUNNING
    try:
        rel = marker.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    marker.unlink(missing_ok=True)
    if not rel or rel in finished:
        return None
    why = "the previous run died while analysing it (a crash or out of memory); --retry-errors runs it again"
    return _failed_row(rel, root / rel, why), {}


# the worker process's model and analyses (set by _worker_main)
_WORKER: dict[str, Any] = {}

#: tests only: ``"NAME=SIGNAL"`` (SIGSEGV, SIGKILL or an exit code) makes a batch worker die
#: that way when it starts the file whose name is NAME, as a crash in native code or the
#: out-of-memory killer would (``tests/test_batch.py``)
CRASH_ENV = "MUSICLENS_TEST_BATCH_CRASH"


def _worker_device(device: str, k: int) -> str:
    """Worker ``k``'s device: with several GPUs, one GPU per worker in turn."""
    import torch

    from musiclens.core.device import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.device_count() > 1:
        return f"cuda:{k % torch.cuda.device_count()}"
    return str(dev)


def _crash_for_tests(path: str) -> None:
    """Die as :data:`CRASH_ENV` says when ``path`` is the file it names (tests only)."""
    name, _, how = os.environ.get(CRASH_ENV, "").partition("=")
    if not name or Path(path).name != name:
        return
    if how == "SIGSEGV":
        import ctypes

        ctypes.string_at(0)  # a real null-pointer read: the kernel sends SIGSEGV
    if how == "SIGKILL":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(int(how or 1))


def _worker_main(conn: Any, ref: str, device: str, names: list[str], top: int, trust_code: bool = False) -> None:
    """A batch worker: load the model, answer ``("ready", None)`` (or ``("failed", message)``),
    then analyse each ``(i, path, rel)`` received and send ``(i, result)``; ``None`` or a closed
    pipe ends it."""
    import torch

    from musiclens.core.models import registry

    torch.set_num_threads(1)
    try:
        model = registry.load(ref, device=device, trust_code=trust_code)
        _WORKER.update(model=model, specs=parse_analyses(names), top=int(top))
    except Exception as exc:  # noqa: BLE001 - told to the parent, which stops the run with it
        conn.send(("failed", _one_line(exc)))
        return
    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if task is None:
            return
        i, path, rel = task
        _crash_for_tests(path)
        try:
            result = analyse_file(_WORKER["model"], path, rel, _WORKER["specs"], top=_WORKER["top"])
        except MemoryError:
            result = _failed_row(rel, path, "out of memory while analysing it"), {}
        conn.send((i, result))


def _failed_row(rel: str, path: str | Path, why: str) -> dict[str, Any]:
    return {"path": rel, "kind": file_kind(path) or "audio", "status": "error", "error": why}


def _death(exitcode: int | None) -> str:
    """Why a worker process ended, in words."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = {"SIGKILL": " (as the out-of-memory killer does)", "SIGSEGV": " (a crash in native code)"}
        return f"killed by {name}{hint.get(name, '')}"
    return f"exit code {exitcode}"


class _Worker:
    """One worker process, its pipe and the file it is analysing (``task``, or None)."""

    def __init__(self, ctx: Any, k: int, ref: str, device: str, names: list[str], top: int, trust: bool) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_main, args=(child, ref, _worker_device(device, k), names, top, trust), daemon=True
        )
        self.proc.start()
        child.close()
        self.ready = False
        self.task: tuple[int, str, str] | None = None

    def stop(self, timeout: float = 5.0) -> None:
        if self.ready and self.task is None and self.proc.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
        else:
            self.proc.terminate()  # abandoned in the middle of a file or of loading the model
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _in_pool(
    ref: str,
    device: str,
    specs: Sequence[AnalysisSpec],
    top: int,
    pending: Sequence[tuple[Path, str]],
    workers: int,
    *,
    trust_code: bool = False,
) -> Generator[FileResult, None, None]:
    """The files on ``workers`` spawned processes, results in ``pending``'s order, at most
    ``2 × workers`` files ahead of the next result to give (constant memory).

    A worker that dies (a segfault, the out-of-memory killer) fails only the file it was
    analysing: that file's row says how it died, a new worker takes its place, the others go
    on. Hand-written on :mod:`multiprocessing` because :class:`ProcessPoolExecutor` breaks the
    whole pool when one process dies and cannot tell which file killed it."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    if not pending:
        return
    ctx = mp.get_context("spawn")
    names = [s.name for s in specs]
    pool = [_Worker(ctx, k, ref, device, names, top, trust_code) for k in range(workers)]
    started = workers
    done: dict[int, FileResult] = {}
    sent = given = 0
    try:
        while True:
            while given in done:
                yield done.pop(given)
                given += 1
            if given >= len(pending):
                break
            # after giving results (given moved on): keep every ready worker busy, at most
            # 2 × workers files ahead — sending before giving left the window shut and the
            # pool waiting for messages that would never come
            for w in pool:
                if w.ready and w.task is None and sent < len(pending) and sent < given + 2 * workers:
                    path, rel = pending[sent]
                    w.task = (sent, str(path), rel)
                    w.conn.send(w.task)
                    sent += 1
            ready = wait([w.conn for w in pool] + [w.proc.sentinel for w in pool])
            for k, w in enumerate(pool):
                message = None
                if w.conn in ready or w.proc.sentinel in ready:
                    try:
                        message = w.conn.recv() if w.conn.poll() else None
                    except (EOFError, OSError):
                        message = None
                if message is not None:
                    if message[0] == "ready":
                        w.ready = True
                    elif message[0] == "failed":
                        raise MusicLensError(f"a batch worker could not load the model: {message[1]}")
                    else:
                        done[int(message[0])] = message[1]
                        w.task = None
                    continue
                if w.proc.sentinel in ready or not w.proc.is_alive():
                    w.proc.join()
                    how = _death(w.proc.exitcode)
                    if not w.ready:
                        raise MusicLensError(f"a batch worker died while loading the model ({how})")
                    if w.task is not None:
                        i, where, rel = w.task
                        done[i] = (
                            _failed_row(rel, where, f"the worker analysing it died ({how}); the other files went on"),
                            {},
                        )
                    w.task = None
                    w.conn.close()
                    pool[k] = _Worker(ctx, started, ref, device, names, top, trust_code)
                    started += 1
    finally:
        for w in pool:
            w.stop()
