"""The one entry point of training: :func:`train` (re-exported as ``musiclens.core.training.train``).

``train(data=FOLDER, out=MODEL_DIR)`` finds the kind of the folder's files (audio or MIDI,
:func:`~musiclens.core.training.data.data_kind`), takes that kind's default architecture
(:data:`~musiclens.core.models.architectures.DEFAULT_ARCH`; ``arch`` overrides) and runs the whole
job as one generator: :class:`~musiclens.core.training.events.PrepareProgress` per file, the
trainer's :class:`~musiclens.core.training.events.Progress`, then
:class:`~musiclens.core.training.events.Finished` with the model and the summary. The CLI's
``train`` command and the window's Training panel both call it.

Import order (no cycles): ``events`` < ``data`` < ``loop`` < ``probe``, ``midi`` < ``entry``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musiclens.core.models import architectures as archs
from musiclens.core.training.loop import TrainConfig, finish_run, prepare_run, summary_of
from musiclens.core.training.loop import train as train_loop

if TYPE_CHECKING:
    from musiclens.core.training.distributed import World

__all__ = ["train", "train_on_folder", "resolve_arch", "default_config"]


def resolve_arch(data: str | Path, arch: str | None = None) -> tuple[str, str]:
    """``(arch, kind)`` for a dataset folder: ``arch``'s kind when given, else the kind of the
    folder's files and its default architecture."""
    if arch is not None:
        return arch, archs.kind_of(arch)
    from musiclens.core.training.data.scan import data_kind

    kind = data_kind(data)
    return archs.DEFAULT_ARCH[kind], kind


def default_config(kind: str, arch: str | None = None, **given: Any) -> TrainConfig:
    """A :class:`TrainConfig` with ``kind``'s defaults (MIDI: the LSTM's epochs, learning rate
    and weight decay, no early stopping; ``arch`` "midi-piece": the whole-piece model's, as
    selected by cross-validation in ``bench_midi_jazz_dance.py``) and the settings ``given``
    that are not None."""
    base: dict[str, Any] = {}
    if kind == "midi":
        from musiclens.core.training.midi import MIDI_DEFAULTS, PIECE_DEFAULTS

        base.update(PIECE_DEFAULTS if arch == "midi-piece" else MIDI_DEFAULTS)
    base.update({k: v for k, v in given.items() if v is not None})
    return TrainConfig(**base)


def train(
    data: str | Path,
    out: str | Path | None = None,
    arch: str | None = None,
    *,
    task: str = "genre",
    config: TrainConfig | None = None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    cache: Any = "default",
    mode: str = "features",
    patch_seconds: float | None = None,
    resume: str | Path | None = None,
    cancel: Any = None,
    model_params: dict[str, Any] | None = None,
    distributed: bool = False,
) -> Iterator[Any]:
    """Train a model on the dataset folder ``data`` and save it to ``out``: one generator.

    ``arch`` None: the default architecture of the folder's kind (audio: vanilla-cnn, MIDI:
    midi-lstm). ``config`` None: :func:`default_config` of that kind. ``task``, ``cache``,
    ``mode``, ``patch_seconds`` and ``resume`` apply to audio; ``model_params`` are the
    architecture's own settings. ``cancel``: a ``threading.Event`` or callable, checked before
    every batch; a cancelled run still saves its best epoch so far.

    ``distributed``: this process is one of a torchrun job (audio architectures trained by
    the loop, not musicnn-probe or midi-lstm): it joins the process group
    (:func:`~musiclens.core.training.distributed.init_from_env`) and leaves it when the
    generator ends, fails or is closed; only rank 0 saves to ``out`` and the checkpoints.
    """
    arch, kind = resolve_arch(data, arch)
    if config is None:
        config = default_config(kind, arch)
    world = None
    if distributed:
        from musiclens.core.errors import ParameterError
        from musiclens.core.training import distributed as dist_mod

        if kind != "audio" or arch == "musicnn-probe":
            raise ParameterError(f"--distributed is for the audio architectures trained end to end, not {arch}")
        world = dist_mod.init_from_env(config.device)
    elif kind == "midi":
        from musiclens.core.training import midi

        if resume is not None:
            from musiclens.core.errors import ParameterError

            raise ParameterError("--resume is for the audio architectures, not midi-lstm")
        yield from midi.train_on_folder(
            data, config=config, out=out, fractions=fractions, cancel=cancel, model_params=model_params, arch=arch
        )
        return
    try:
        yield from train_on_folder(
            arch,
            data,
            task=task,
            config=config,
            out=out if world is None or world.is_main else None,
            fractions=fractions,
            cache=cache,
            mode=mode,
            patch_seconds=patch_seconds,
            resume=resume,
            cancel=cancel,
            model_params=model_params,
            world=world,
        )
    finally:
        if world is not None:
            world.close()


def train_on_folder(
    arch: str,
    root: str | Path,
    *,
    task: str = "genre",
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    cache: Any = "default",
    mode: str = "features",
    patch_seconds: float | None = None,
    resume: str | Path | None = None,
    cancel: Any = None,
    model_params: dict[str, Any] | None = None,
    world: World | None = None,
) -> Iterator[Any]:
    """The audio run: scan, split by track, prepare patches, train, evaluate and save.

    Yields :class:`~musiclens.core.training.events.PrepareProgress` (one per track), then
    :class:`~musiclens.core.training.events.Progress` events, then
    :class:`~musiclens.core.training.events.Finished` with the model (saved to ``out`` when
    given) and :func:`~musiclens.core.training.loop.summary_of`'s dict. ``cache="default"``
    uses :func:`~musiclens.core.training.data.cache_dir`, None disables it, a
    :class:`~musiclens.core.training.data.FeatureCache` is used as is. ``world``: a
    :class:`~musiclens.core.training.distributed.World` (see :func:`train`'s ``distributed``).
    """
    import torch

    from musiclens.core.device import resolve_device
    from musiclens.core.models import study
    from musiclens.core.training import data as data_mod

    if archs.kind_of(arch) != "audio":
        from musiclens.core.errors import ParameterError

        raise ParameterError(f"{arch} is not an audio architecture")
    if world is not None and arch == "musicnn-probe":
        from musiclens.core.errors import ParameterError

        raise ParameterError("--distributed is not for musicnn-probe (its head is fitted on cached features)")
    if arch == "musicnn-probe":  # transfer learning: cached frozen features + a fitted head
        from musiclens.core.training import probe

        yield from probe.train_on_folder(
            root,
            task=task,
            config=config,
            out=out,
            fractions=fractions,
            cache=cache,
            mode=mode,
            patch_seconds=patch_seconds,
            resume=resume,
            cancel=cancel,
            model_params=model_params,
        )
        return
    cfg = config or TrainConfig()
    cfg.check()
    ds = data_mod.load_dataset(root, task=task)
    split = data_mod.split_by_track(ds, fractions=fractions, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    model = study.create(arch, ds.labels, multilabel=ds.multilabel, patch_seconds=patch_seconds, **(model_params or {}))
    prepared = yield from prepare_run(model, ds, split, arch=arch, cache=cache, mode=mode, cancel=cancel)
    if prepared is None:
        return
    last = None
    for ev in train_loop(model, prepared, cfg, cancel=cancel, resume=resume, world=world):
        last = ev
        yield ev
    device = world.device if world is not None else resolve_device(cfg.device)
    summary = summary_of(model, prepared, arch, last, device=device, world=world)
    yield finish_run(model, summary, last, root=root, task=task, ds=ds, split=split, cfg=cfg, out=out)
