"""Layer-wise similarity: of two recordings (one patch each), of many files (every pair or
the pairs within each class), and within the classes of a labelled folder."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musiclens.core.analyses.recording import display_of, layer_kinds
from musiclens.core.analyses.results import ClassSimilarity, PairwiseSimilarity, Similarity
from musiclens.core.progress import Progress


def read_features(
    model: Any, path: str | Path, *, offset: float = 0.0, duration: float | None = None, pad: bool = False
) -> Any:
    """An audio file -> its front-end input (1, C, F, T) at the model's rate, on its device.

    duration : seconds to read; None = one model patch (exactly ``patch_frames`` frames), 0 =
        the whole file. pad : zero-pad a read shorter than one patch to one patch.
    """
    import torch

    from musiclens.core.analyses.recording import read_span
    from musiclens.core.interpret._common import to_fe_rate

    y, sr = read_span(path, model, offset=offset, duration=duration)
    yy, _, _ = to_fe_rate(y, sr, model.front_end, device=model.device)
    if pad and yy.shape[-1] < model.patch_samples:
        yy = torch.nn.functional.pad(yy, (0, model.patch_samples - yy.shape[-1]))
    with torch.no_grad():
        return model.front_end(yy)


def similarity_of_files(
    model: Any,
    files: Sequence[str | Path],
    *,
    labels: Sequence[str] | None = None,
    within_class: bool = False,
    metrics: Iterable[str] | None = None,
    baseline: bool = True,
    layers: Sequence[str] | None = None,
    offset: float = 0.0,
    duration: float | None = None,
    pad: bool = False,
    on_compare: Callable[[int, int], None] | None = None,
) -> Generator[Progress, None, PairwiseSimilarity]:
    """Layer-wise similarity of every pair of ``files`` (``within_class``: every pair of files
    with the same label in ``labels``), each file run once (one patch by default, see
    :func:`read_features`) -> :class:`PairwiseSimilarity` ((P, L) per metric; ``.mean(label)``
    gives a curve). Yields a :class:`Progress` per file read (``payload`` ("read", done,
    total)), one before the comparisons (("pairs", n, n)) and one after; these run in one call of the engine,
    which reports each pair at each layer to ``on_compare(done, total)`` when given."""
    from musiclens.core.errors import ParameterError
    from musiclens.core.interpret.similarity import DEFAULT_METRICS, all_pairs, class_pairs, pairwise_similarity_steps

    names = [str(f) for f in files]
    if len(names) < 2:
        raise ParameterError(f"need at least two audio files to compare, got {len(names)}")
    if within_class:
        if labels is None:
            raise ParameterError("comparing within classes needs the classes (labels)")
        groups = class_pairs(list(labels))
        if not groups:
            raise ParameterError("no class has two files: nothing to compare within a class")
        pairs = [p for ps in groups.values() for p in ps]
    else:
        groups = {}
        pairs = all_pairs(len(names))
    used = sorted({i for p in pairs for i in p})
    xs: dict[int, Any] = {}
    for k, i in enumerate(used, start=1):
        xs[i] = read_features(model, names[i], offset=offset, duration=duration, pad=pad)
        yield Progress(
            fraction=0.5 * k / len(used),
            message=f"read {Path(names[i]).name} ({k}/{len(used)})",
            payload=("read", k, len(used)),
        )
    yield Progress(
        fraction=0.5,
        message=f"comparing {len(pairs)} pair{'s' if len(pairs) != 1 else ''} at every layer",
        payload=("pairs", len(pairs), len(pairs)),
    )
    # only the files in some pair are run; renumber the pairs to the compact list
    pos = {i: k for k, i in enumerate(used)}
    steps = pairwise_similarity_steps(
        model,
        [xs[i] for i in used],
        [(pos[a], pos[b]) for a, b in pairs],
        layers=layers,
        metrics=DEFAULT_METRICS if metrics is None else metrics,
        baseline=baseline,
    )
    while True:
        try:
            done, total = next(steps)
        except StopIteration as stop:
            curve = stop.value
            break
        if on_compare is not None:
            on_compare(done, total)
        if done % max(1, total // 100) == 0 or done == total:  # about 100 steps for the progress bar
            yield Progress(fraction=0.5 + 0.5 * done / total, message=f"compared {done}/{total} (pair, layer)")
    yield Progress(fraction=1.0, message="compared")
    return PairwiseSimilarity(
        names,
        [(int(a), int(b)) for a, b in pairs],
        list(curve.layers),
        {k: np.asarray(v) for k, v in curve.values.items()},
        groups,
        None if labels is None else list(labels),
    )


def class_similarity(model: Any, folder: str | Path, **options: Any) -> Generator[Progress, None, ClassSimilarity]:
    """Within-class similarity over a labelled folder (``folder/<label>/<audio files>``): one
    patch of every file, every pair of files of one class, the mean curve per class ->
    :class:`ClassSimilarity`. ``options``: those of :func:`similarity_of_files`."""
    from musiclens.core import audio
    from musiclens.core.errors import MusicLensError
    from musiclens.core.interpret.similarity import class_pairs

    folder = Path(folder)
    files = sorted(f for f in folder.glob("*/*") if f.suffix.lower() in audio.AUDIO_EXTENSIONS)
    if not class_pairs([f.parent.name for f in files]):
        raise MusicLensError(f"{folder}: no class folder holds two audio files to compare")
    labels = [f.parent.name for f in files]
    result = yield from similarity_of_files(model, files, labels=labels, within_class=True, **options)
    per_class = {label: result.mean(label) for label in result.groups}
    return ClassSimilarity(
        str(folder), result.layers, per_class, {k: len(v) for k, v in result.groups.items()}, layer_kinds(model)
    )


def pair_similarity(
    model: Any, audio_a: np.ndarray, other: str | Path, *, start_s: float = 0.0, name_a: str = "a"
) -> Generator[Progress, None, Similarity]:
    """Compare a patch (``audio_a``: (samples,) at the model's rate, starting at ``start_s``
    in its recording) with the same stretch of the file ``other``, layer by layer ->
    :class:`Similarity` with each layer's mean feature map of both."""
    import torch

    from musiclens.core import audio
    from musiclens.core.interpret.hooks import activations, as_map
    from musiclens.core.interpret.similarity import default_layers, layer_similarity

    other = Path(other)
    fe = model.front_end
    yield Progress(fraction=0.0, message=f"reading {other.name}")
    y, _ = audio.load(other, sr=fe.sample_rate, offset=start_s, duration=len(audio_a) / fe.sample_rate)
    if len(y) < len(audio_a):
        y = np.pad(y, (0, len(audio_a) - len(y)))
    device = getattr(model, "device", "cpu")
    with torch.no_grad():
        xa = fe(torch.from_numpy(np.ascontiguousarray(audio_a))[None].to(device))[..., : model.patch_frames]
        xb = fe(torch.from_numpy(np.ascontiguousarray(y[: len(audio_a)]))[None].to(device))[..., : model.patch_frames]
    yield Progress(fraction=0.3, message="comparing every layer")
    curve = layer_similarity(model, xa, xb)
    layers = [name for name in default_layers(model) if name in curve.layers]
    acts_a = activations(model, xa, layers)
    acts_b = activations(model, xb, layers)
    maps = [
        (name, as_map(acts_a[name])[0].mean(0).cpu().numpy(), as_map(acts_b[name])[0].mean(0).cpu().numpy())
        for name in layers
    ]
    maps.insert(0, ("input", display_of(xa[0], fe), display_of(xb[0], fe)))
    return Similarity(
        name_a, other.name, start_s, curve.layers, {k: v[0] for k, v in curve.values.items()}, maps, layer_kinds(model)
    )
