"""``model.json`` checked before anything is built: read with limits, every field against a schema.

:func:`read_json` reads a regular file of at most :data:`MAX_JSON_BYTES` whose nesting is at
most :data:`MAX_JSON_DEPTH` deep (a folder, a named pipe, a symlink loop, a huge or deeply
nested file is one clear error, never a hang or a ``RecursionError``).

:func:`check_meta` checks the top-level fields (types, known keys, labels, patch length);
:func:`check_fields` checks an object (an input spec, a family's ``params``) against the
signature of the class or builder that takes it: unknown and missing keys, each value
against its annotation (an ``int`` must be an integer, not ``1.5`` nor ``[96]``; a ``float``
a finite number), and against :data:`RANGES` (sizes at least 1 and at most :data:`MAX_SIZE`
unless listed). Every failure is one :class:`MusicLensError` naming the field, the value
given and what is allowed.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musiclens.core.errors import MusicLensError, regular_file

#: The largest ``model.json`` read (bytes).
MAX_JSON_BYTES = 1_000_000
#: The deepest nesting of lists and objects in ``model.json``.
MAX_JSON_DEPTH = 32
#: The most parameters (and buffers) a family's network may have, counted before it is built.
MAX_PARAMETERS = 200_000_000
#: The most values one item of a network's input may have (float32: 80 MB).
MAX_INPUT_VALUES = 20_000_000
#: The largest value of an integer field not listed in :data:`RANGES` (a size, a count).
MAX_SIZE = 1_000_000
#: The most labels a model may have.
MAX_LABELS = 100_000
#: The longest text field (a label, a name, a file name).
MAX_TEXT = 1_000

#: ``field name -> (lowest, highest, lowest excluded)`` for numbers (also inside lists);
#: integers not listed are sizes in ``1..MAX_SIZE``, other numbers only need to be finite.
RANGES: dict[str, tuple[float, float, bool]] = {
    # front end
    "sample_rate": (1, 1_000_000, False),
    "n_fft": (1, 1 << 18, False),
    "hop": (1, 1 << 20, False),
    "win_length": (1, 1 << 18, False),
    "n_mels": (1, 4096, False),
    "fmin": (0.0, 1e6, False),
    "fmax": (0.0, 1e6, True),
    "power": (0.0, 10.0, True),
    "ref": (0.0, 1e30, True),
    "amin": (0.0, 1.0, True),
    "top_db": (0.0, 1e4, False),
    "log_gain": (0.0, 1e12, True),
    # note features
    "n_notes": (1, MAX_SIZE, False),
    "min_notes": (0, MAX_SIZE, False),
    "programs": (0, 127, False),
    "time_scale": (0.0, 1e6, True),
    "mean": (-1e9, 1e9, False),
    "std": (0.0, 1e9, True),
    # waveform
    "patch_samples": (1, 10_000_000, False),
    # the model
    "patch_frames": (1, MAX_SIZE, False),
    # architecture params
    "dropout": (0.0, 1.0, False),
    "leak": (-1e3, 1e3, False),
    "l2": (0.0, 1e3, False),
    "mask_radius_f": (0.0, 1e3, True),
    "mask_radius_t": (0.0, 1e3, True),
}

#: The top-level keys of ``model.json`` and their types.
TOP_LEVEL: dict[str, Any] = {
    "format": str,
    "name": str,
    "input": typing.Literal["audio", "midi", "waveform"],
    "architecture": dict[str, Any],
    "weights": str | None,
    "layer_names": dict[str, str],
    "front_end": dict[str, Any],
    "note_features": dict[str, Any],
    "waveform": dict[str, Any],
    "labels": list[str],
    "multilabel": bool,
    "patch_frames": int,
    "provenance": dict[str, Any],
}


def show(value: Any, limit: int = 60) -> str:
    """A short ``repr`` of a value for a message."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fail(where: str | os.PathLike[str], field: str, value: Any, allowed: str) -> MusicLensError:
    """``"{where}: {field} is {value}; allowed: {allowed}"`` as a :class:`MusicLensError`."""
    return MusicLensError(f"{where}: {field} is {show(value)}; allowed: {allowed}")


# ----------------------------------------------------------------------------- reading
def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in JSON text (brackets inside strings ignored)."""
    import re

    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    codes = np.frombuffer(bare.encode("utf-8", "replace"), dtype=np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def read_json(path: Path, what: str = "model.json") -> Any:
    """The JSON value of ``path``: a regular file of at most :data:`MAX_JSON_BYTES`, nested at
    most :data:`MAX_JSON_DEPTH` deep; one clear :class:`MusicLensError` otherwise."""
    size = regular_file(path, what)
    if size > MAX_JSON_BYTES:
        raise MusicLensError(f"{path} is {size:,} bytes; a {what} may have at most {MAX_JSON_BYTES:,}")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise MusicLensError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_JSON_BYTES:
        raise MusicLensError(f"{path} has more than {MAX_JSON_BYTES:,} bytes; a {what} may have at most that")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MusicLensError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise MusicLensError(f"{path} is nested {depth} levels deep; a {what} may be nested at most {MAX_JSON_DEPTH}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MusicLensError(f"{path} is not valid JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise MusicLensError(f"{path} cannot be read as JSON: {str(exc)[:200]}") from None


# ----------------------------------------------------------------------------- values
def describe(annotation: Any) -> str:
    """What a type annotation allows, in words (``int`` -> ``"an integer"``)."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return "any value"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if annotation is type(None):
        return "null"
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a finite number"
    if annotation is str:
        return "text"
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"a list of ({describe(args[0])})"
    if origin is tuple:
        return f"a list of {len(args)} items ({', '.join(describe(a) for a in args)})"
    if origin in (list, Sequence, typing.Sequence) or annotation in (list, tuple):
        return f"a list of ({describe(args[0])})" if args else "a list"
    if origin in (dict, Mapping) or annotation is dict:
        return "an object"
    return getattr(annotation, "__name__", str(annotation))


def _range_text(lo: float, hi: float, open_lo: bool, integer: bool) -> str:
    def num(v: float) -> str:
        return f"{int(v):,}" if integer or (float(v).is_integer() and abs(v) < 1e15) else f"{v:g}"

    return f"{'an integer' if integer else 'a number'} {'>' if open_lo else '>='} {num(lo)} and <= {num(hi)}"


def check_number(value: Any, integer: bool, name: str, field: str, where: str | os.PathLike[str]) -> None:
    """An integer (not a bool, not ``1.5``) or a finite number, within :data:`RANGES` [name]."""
    if integer:
        if isinstance(value, bool) or not isinstance(value, int):
            lo, hi, open_lo = RANGES.get(name, (1, MAX_SIZE, False))
            raise fail(where, field, value, _range_text(lo, hi, open_lo, True))
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        lo, hi, open_lo = RANGES.get(name, (-math.inf, math.inf, False))
        allowed = "a finite number" if math.isinf(lo) else _range_text(lo, hi, open_lo, False)
        raise fail(where, field, value, allowed)
    lo, hi, open_lo = RANGES.get(name, (1, MAX_SIZE, False) if integer else (-math.inf, math.inf, False))
    if value < lo or value > hi or (open_lo and value == lo):
        raise fail(where, field, value, _range_text(lo, hi, open_lo, integer))


def _json_only(value: Any, field: str, where: str | os.PathLike[str]) -> None:
    """Free-form values: JSON types whose numbers are finite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise fail(where, field, value, "a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            _json_only(v, f"{field}.{k}", where)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _json_only(v, f"{field}[{i}]", where)


def check_value(value: Any, annotation: Any, name: str, field: str, where: str | os.PathLike[str]) -> None:
    """``value`` against a type annotation (JSON values: lists stand for tuples and sequences);
    ``name`` picks the range in :data:`RANGES`, ``field`` is shown in the message."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        _json_only(value, field, where)
        return
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        errors: list[MusicLensError] = []
        for alt in args:
            try:
                check_value(value, alt, name, field, where)
                return
            except MusicLensError as exc:
                errors.append(exc)
        # the value's own kind decides which message is the useful one
        matching = [e for alt, e in zip(args, errors) if alt is not type(None) and _same_kind(value, alt)]
        raise matching[0] if matching else fail(where, field, value, describe(annotation))
    if origin is typing.Literal:
        if not any(type(value) is type(a) and value == a for a in args):
            raise fail(where, field, value, describe(annotation))
        return
    if annotation is type(None):
        if value is not None:
            raise fail(where, field, value, "null")
        return
    if annotation is bool:
        if not isinstance(value, bool):
            raise fail(where, field, value, "true or false")
        return
    if annotation in (int, float):
        check_number(value, annotation is int, name, field, where)
        return
    if annotation is str:
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise fail(where, field, value, f"text of at most {MAX_TEXT} characters")
        return
    if origin in (tuple, list, Sequence, typing.Sequence) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise fail(where, field, value, describe(annotation))
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise fail(where, field, value, describe(annotation))
            items = list(args)
        else:
            items = [args[0] if args else Any] * len(value)
        if len(value) > MAX_SIZE:
            raise fail(where, field, value, f"at most {MAX_SIZE:,} items")
        for i, (v, a) in enumerate(zip(value, items)):
            check_value(v, a, name, f"{field}[{i}]", where)
        return
    if origin in (dict, Mapping) or annotation is dict:
        if not isinstance(value, dict):
            raise fail(where, field, value, "an object")
        value_type = args[1] if len(args) == 2 else Any
        for k, v in value.items():
            check_value(v, value_type, str(k), f"{field}.{k}", where)
        return
    raise fail(where, field, value, describe(annotation))  # an annotation this checker does not know


def _same_kind(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    if isinstance(value, bool):
        return annotation is bool
    if isinstance(value, (int, float)):
        return annotation in (int, float)
    if isinstance(value, str):
        return annotation is str or origin is typing.Literal
    if isinstance(value, (list, tuple)):
        return origin in (tuple, list, Sequence, typing.Sequence)
    if isinstance(value, dict):
        return origin in (dict, Mapping)
    return False


# ----------------------------------------------------------------------------- objects
def signature_fields(target: Callable[..., Any], *, infer: bool = False) -> dict[str, tuple[Any, bool]]:
    """``name -> (annotation, required)`` of a dataclass's fields or a callable's keyword
    arguments (a class: its ``__init__``); ``*args``/``**kwargs`` are left out. ``infer``:
    an argument without annotation takes its default's kind (a number for ``4`` or ``0.5``,
    true or false for ``False``, text for ``"x"``; the user's own code)."""
    if dataclasses.is_dataclass(target) and isinstance(target, type):
        hints = typing.get_type_hints(target)
        return {
            f.name: (
                hints.get(f.name, Any),
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            )
            for f in dataclasses.fields(target)
            if f.init
        }
    anything: Any = target
    fn = anything.__init__ if isinstance(target, type) else target
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - annotations that do not resolve: checked by kind of default only
        hints = {}
    out: dict[str, tuple[Any, bool]] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        annotation = hints.get(p.name, Any)
        if annotation is Any and infer and p.default is not inspect.Parameter.empty:
            d = p.default
            annotation = (
                bool
                if isinstance(d, bool)
                else float
                if isinstance(d, (int, float))
                else str
                if isinstance(d, str)
                else Any
            )
        out[p.name] = (annotation, p.default is inspect.Parameter.empty)
    return out


def takes_any_keyword(target: Callable[..., Any]) -> bool:
    """Whether a callable (a class: its ``__init__``) takes ``**kwargs``."""
    anything: Any = target
    fn = anything.__init__ if isinstance(target, type) else target
    try:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True


def check_fields(
    d: Any,
    target: Callable[..., Any],
    where: str | os.PathLike[str],
    section: str,
    *,
    skip: Sequence[str] = (),
    required: bool = True,
    infer: bool = False,
) -> None:
    """An object of keyword arguments for ``target`` (a dataclass or a callable): no unknown
    key (unless it takes ``**kwargs``), every required one given (when ``required``), each
    value of its annotated type and range. ``skip``: keys the caller supplies itself (refused
    here). ``infer``: see :func:`signature_fields`."""
    if not isinstance(d, dict):
        raise fail(where, section, d, "an object")
    fields = {k: v for k, v in signature_fields(target, infer=infer).items() if k not in skip}
    open_ended = not dataclasses.is_dataclass(target) and takes_any_keyword(target)
    unknown = [] if open_ended else sorted(str(k) for k in d if k not in fields)
    if unknown:
        raise MusicLensError(
            f"{where}: {section} has unknown keys {', '.join(map(repr, unknown[:5]))}; "
            f"allowed: {', '.join(fields) or 'none'}"
        )
    if required:
        missing = [k for k, (_, req) in fields.items() if req and k not in d]
        if missing:
            raise MusicLensError(f"{where}: {section} lacks {', '.join(map(repr, missing))} (required)")
    for key, value in d.items():
        annotation, _ = fields.get(key, (Any, False))
        check_value(value, annotation, key, f"{section}.{key}", where)


# ----------------------------------------------------------------------------- model.json
def check_meta(meta: Any, where: str | os.PathLike[str], *, expected_format: str) -> None:
    """The top level of a ``model.json``: an object of known keys (:data:`TOP_LEVEL`), the
    format, the input kind, the keys that kind needs, the architecture's form, the labels
    (1..:data:`MAX_LABELS` texts) and the patch length. The input spec and the family's params
    are checked by their readers (:func:`check_fields`)."""
    if not isinstance(meta, dict):
        raise MusicLensError(f'{where}: expected a JSON object with "format": {expected_format!r}, got {show(meta)}')
    if meta.get("format") != expected_format:
        raise fail(where, "format", meta.get("format"), json.dumps(expected_format))
    unknown = sorted(str(k) for k in meta if k not in TOP_LEVEL)
    if unknown:
        raise MusicLensError(
            f"{where}: unknown keys {', '.join(map(repr, unknown[:5]))}; allowed: {', '.join(TOP_LEVEL)}"
        )
    for key, annotation in TOP_LEVEL.items():
        if key in meta and key not in ("architecture", "provenance", "front_end", "note_features", "waveform"):
            check_value(meta[key], annotation, key, key, where)
    for key in ("provenance", "front_end", "note_features", "waveform", "architecture"):
        if key in meta and not isinstance(meta[key], dict):
            raise fail(where, key, meta[key], "an object")
    kind = meta.get("input", "audio")
    needs = {"audio": ("front_end", "patch_frames"), "midi": ("note_features",), "waveform": ("waveform",)}[kind]
    for key in ("architecture", "labels", *needs):
        if key not in meta:
            raise MusicLensError(
                f"{where}: the key {key!r} is missing (a{'n' if kind == 'audio' else ''} {kind} model)"
            )
    labels = meta["labels"]
    if not 1 <= len(labels) <= MAX_LABELS:
        raise fail(where, "labels", labels, f"a list of 1 to {MAX_LABELS:,} label names")
    arch = meta["architecture"]
    forms = [k for k in ("family", "python", "exported", "torchscript") if k in arch]
    if len(forms) != 1:
        raise MusicLensError(
            f"{where}: the architecture must have exactly one of 'family', 'python', 'exported', 'torchscript'; "
            f"got {show(sorted(map(str, arch)))}"
        )
    form = forms[0]
    allowed = {form, "params"} if form in ("family", "python") else {form}
    extra = sorted(str(k) for k in arch if k not in allowed)
    if extra:
        raise MusicLensError(
            f"{where}: architecture has unknown keys {', '.join(map(repr, extra))}; allowed with "
            f"{form!r}: {', '.join(sorted(allowed))}"
        )
    check_value(arch[form], str, form, f"architecture.{form}", where)
    if "params" in arch and not isinstance(arch["params"], dict):
        raise fail(where, "architecture.params", arch["params"], "an object of keyword arguments")
    if "params" in arch:
        _json_only(arch["params"], "architecture.params", where)
    if "provenance" in meta:
        _json_only(meta["provenance"], "provenance", where)


def input_values(channels: int, rows: int, length: int, where: str | os.PathLike[str], what: str) -> None:
    """One input item of ``channels × rows × length`` values must stay under :data:`MAX_INPUT_VALUES`."""
    n = int(channels) * int(rows) * int(length)
    if n > MAX_INPUT_VALUES:
        raise MusicLensError(
            f"{where}: {what} makes one input item {channels} × {rows} × {length} = {n:,} values; "
            f"allowed: at most {MAX_INPUT_VALUES:,}"
        )


#: The largest mel filterbank a front end may ask for (``n_mels × (n_fft // 2 + 1)`` values).
MAX_FILTERBANK = 1 << 22


def check_spec(kind: str, d: Any, spec_class: type, where: str | os.PathLike[str], section: str) -> None:
    """An input spec's object (``front_end``, ``note_features``, ``waveform``) against its
    dataclass (``spec_class``), and sizes that stay bounded (the mel filterbank)."""
    check_fields(d, spec_class, where, section, required=True)
    if kind == "audio":
        n_fft, n_mels = d.get("n_fft"), d.get("n_mels")
        if isinstance(n_mels, int) and n_mels * (n_fft // 2 + 1) > MAX_FILTERBANK:
            raise MusicLensError(
                f"{where}: {section} asks for a mel filterbank of {n_mels} × {n_fft // 2 + 1} values "
                f"(n_mels × (n_fft / 2 + 1)); allowed: at most {MAX_FILTERBANK:,}"
            )
