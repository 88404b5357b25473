"""The session: what is open (a recording, a model) and every analysis of it.

Panels ask the session; the session runs the work on the :class:`Worker` thread through
``musiclens.core`` and announces results with signals. Nothing here touches torch on the
GUI thread: heavy modules are imported inside jobs, so the window shows before they load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, Signal

from musiclens.app.worker import Cancelled, Job, JobContext, JobProgress, Worker
from musiclens.core.resources import DEFAULT_MODEL  # noqa: F401  (defined once, in the core)

MIDI_CLASSIFY_JOB = "classify MIDI"
MIDI_FLIP_JOB = "flip MIDI"


@dataclass
class ModelSummary:
    """What the GUI needs of a model, plain Python (no torch)."""

    name: str
    labels: list[str]
    multilabel: bool
    layers: list[tuple[str, str, str]]  # (readable name, group, kind)
    patch_seconds: float
    front_end_kind: str
    sample_rate: int
    source: str = ""


@dataclass
class Recording:
    """An opened recording as the model sees it."""

    path: Path
    audio: np.ndarray  # (samples,) float32 mono at the model's rate
    sample_rate: int
    display: np.ndarray  # (F, T) what the spectrogram viewer draws (dB or log-compressed)
    bin_hz: np.ndarray  # (F,) centre frequency of each row
    duration_s: float
    caption: str = ""


@dataclass
class Analysis:
    """Whole-file predictions: per-patch probabilities and the file's ranking."""

    labels: list[str]
    probabilities: np.ndarray  # (P, L)
    patch_starts_s: np.ndarray  # (P,)
    patch_seconds: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class LayerMaps:
    """Per-filter activation maps of one layer for one patch."""

    layer: str
    patch: int
    start_s: float
    maps: np.ndarray  # (K, F_l, T_l) before any ReLU
    energy: np.ndarray  # (K,) mean square of the positive part: what the auralisation's mask is made of
    level_db: np.ndarray | None = None  # (K,) RMS of each filter's auralisation, dBFS (-inf: digital silence)
    silent: np.ndarray | None = None  # (K,) auralisation below silent_db
    silent_db: float = -40.0


@dataclass
class Heard:
    """Audio made from a filter (auralisation or deconvolution) and the mask behind it."""

    label: str
    audio: np.ndarray  # (samples,) float32
    sample_rate: int
    mask: np.ndarray  # (F, T) over [start_s, end_s]
    start_s: float
    end_s: float
    level_db: float = float("nan")  # RMS of the auralisation as computed, dBFS
    gain_db: float = 0.0  # applied for loudness-normalised listening (0: as computed)


@dataclass
class Attribution:
    """A map over the front end's bins and time (F, T_total) for one method and target."""

    method: str
    target: str
    layer: str | None
    values: np.ndarray
    start_s: float
    end_s: float
    signed: bool
    note: str = ""


@dataclass
class Dreamt:
    """A finished dream: its audio, the input before and after, and what the model says."""

    audio: np.ndarray
    sample_rate: int
    before: np.ndarray  # (F, T) display of the start
    after: np.ndarray  # (F, T) display of the dream
    objective_before: float
    objective_after: float
    probabilities_before: dict[str, float]
    probabilities_after: dict[str, float]
    label: str
    steps: int = 0  # updates applied
    total: int = 0  # updates asked for
    stopped: bool = False  # the user stopped it at ``steps``


@dataclass
class Similarity:
    """Layer-wise similarity of two stimuli (one patch each) and their mean feature maps."""

    name_a: str
    name_b: str
    start_s: float
    layers: list[str]
    values: dict[str, np.ndarray]  # metric -> (L,)
    maps: list[tuple[str, np.ndarray, np.ndarray]]  # (layer, map of A, map of B), input first
    kinds: dict[str, str] = field(default_factory=dict)  # layer -> conv, batchnorm, block, pool, dense…


@dataclass
class MidiOpened:
    """A MIDI file read with the MIDI model's spec: ``notes`` are the tracks the model reads
    (drums left out); the whole file stays in ``notes.document`` and saving keeps it."""

    path: Path
    notes: Any  # musiclens.core.midi.Notes
    labels: list[str]
    model: str
    window: int  # notes the model reads
    repairs: list[str]


@dataclass
class MidiClassified:
    """The MIDI model's output for one state of the edited notes."""

    revision: int
    labels: list[str]
    probabilities: np.ndarray  # (L,)
    saliency: np.ndarray  # (k, 3) d logit[target] / d (pitch, step, duration), the window's notes
    notes_used: int
    target: int
    elapsed_s: float


@dataclass
class MidiFlip:
    """A proposed flip: the engine's result and the whole piece if accepted."""

    result: Any  # FlipResult
    proposal: Any  # Notes: the piece with the flipped opening, as a saved file reads back
    labels: list[str]


@dataclass
class ClassSimilarity:
    """Mean layer-wise similarity of all within-class pairs, per class."""

    folder: str
    layers: list[str]
    per_class: dict[str, dict[str, np.ndarray]]  # label -> metric -> (L,)
    pairs: dict[str, int]  # label -> number of pairs
    kinds: dict[str, str] = field(default_factory=dict)  # layer -> conv, batchnorm, block, pool, dense…


class Session(QObject):
    model_changed = Signal(object)  # ModelSummary
    recording_changed = Signal(object)  # Recording
    analysis_ready = Signal(object)  # Analysis
    status = Signal(str)
    error = Signal(str)
    progress = Signal(object)  # JobProgress of the running job

    def __init__(self, worker: Worker, parent: QObject | None = None, *,
                 long_worker: Worker | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        # long jobs (training) run here, so analyses never wait behind them
        self.long_worker = long_worker or worker
        self.model = None  # LoadedModel, touched only in jobs (worker thread)
        self.summary: ModelSummary | None = None
        self.recording: Recording | None = None
        self.analysis: Analysis | None = None
        self._path: Path | None = None
        self.midi_model = None  # a LoadedModel of kind "midi", touched only in jobs

    # ------------------------------------------------------------------ plumbing
    def submit(self, name: str, fn: Callable[[JobContext], Any], on_result: Callable[[Any], None],
               *, on_progress: Callable[[JobProgress], None] | None = None,
               on_error: Callable[[str], None] | None = None, worker: Worker | None = None) -> Job:
        """Run ``fn`` in the worker (``worker``: another one, e.g. :attr:`long_worker`);
        results and errors come back on the GUI thread."""
        def failed(message: str) -> None:
            self.error.emit(f"{name}: {message}")
            if on_error:
                on_error(message)

        def progressed(p: JobProgress) -> None:
            self.progress.emit(p)
            if on_progress:
                on_progress(p)

        return (worker or self.worker).run(name, fn, on_result=on_result, on_error=failed,
                                           on_progress=progressed)

    # ------------------------------------------------------------------ model
    def load_model(self, name_or_dir: str, *, then: Callable[[], None] | None = None) -> Job:
        def work(ctx: JobContext):
            ctx.progress(None, "loading PyTorch")
            import torch  # noqa: F401  (the heavy import happens here, off the GUI thread)

            from musiclens.core.models import registry

            ctx.progress(None, f"loading model {name_or_dir}")
            model = registry.load(name_or_dir)
            self.model = model
            return summarise(model)

        def done(summary: ModelSummary) -> None:
            self.summary = summary
            self.model_changed.emit(summary)
            self.status.emit(f"model {summary.name} ready ({len(summary.labels)} labels)")
            if self._path is not None:
                self.open(self._path)
            if then:
                then()

        return self.submit(f"load model {name_or_dir}", work, done)

    # ------------------------------------------------------------------ recording
    def open(self, path: str | Path) -> Job:
        """Read a recording at the model's rate, draw it, then predict."""
        path = Path(path)

        def work(ctx: JobContext):
            from musiclens.core import audio

            model = self._require_model()
            fe = model.front_end
            ctx.progress(None, f"reading {path.name}")
            y, sr = audio.load(path, sr=fe.sample_rate)
            ctx.progress(None, "computing the front end")
            return make_recording(path, y, sr, model)

        def done(rec: Recording) -> None:
            self._path = path
            self.recording = rec
            self.analysis = None
            self.recording_changed.emit(rec)
            self.status.emit(f"opened {path.name}: {rec.duration_s:.1f} s")
            self.analyse()

        return self.submit(f"open {path.name}", work, done)

    def analyse(self) -> Job:
        rec = self.recording

        def work(ctx: JobContext):
            from musiclens.core.tagging import taggram

            model = self._require_model()
            ctx.progress(None, "predicting")
            tg = taggram(model, rec.audio)
            return Analysis(tg.labels, tg.probabilities, tg.patch_starts_s, tg.patch_seconds, tg.top())

        def done(result: Analysis) -> None:
            self.analysis = result
            self.analysis_ready.emit(result)
            best = ", ".join(f"{t} {p:.2f}" for t, p in result.top[:3])
            self.status.emit(f"analysed {rec.path.name}: {best}")

        return self.submit("predict", work, done)

    # ------------------------------------------------------------------ looking inside
    def layer_maps(self, layer: str, patch: int, on_result: Callable[[LayerMaps], None]) -> Job:
        """Per-filter activation maps of ``layer`` on one patch, with what each filter's
        auralisation sounds like (energy of the positive part, level in dBFS, silent or not)."""
        audio, start = self.patch_audio(patch)

        def work(ctx: JobContext) -> LayerMaps:
            from musiclens.core.interpret.auralise import filter_levels

            model = self._require_model()
            levels = filter_levels(model, audio, layer=layer)  # the same input hear_filter uses
            return LayerMaps(layer, patch, start, levels.maps, levels.energy, levels.level_db,
                             levels.silent, levels.silent_db)

        return self.submit(f"activations of {layer}", work, on_result)

    def hear_filter(self, layer: str, k: int, patch: int, how: str,
                    on_result: Callable[["Heard"], None], *, normalise_to: float | None = None) -> Job:
        """Auralise (``how="activation"``) or deconvolve (``"deconv"``) filter ``k`` on a patch.
        ``normalise_to``: scale the result to that RMS level in dBFS (peak ≤ 0.99; silence
        stays silent); the gain is in ``Heard.gain_db``."""
        audio, start = self.patch_audio(patch)

        def work(ctx: JobContext) -> Heard:
            from musiclens.core.interpret.auralise import auralise_filter, normalise_loudness, rms_dbfs
            from musiclens.core.interpret.deconv import auralise_deconv

            model = self._require_model()
            run = auralise_filter if how == "activation" else auralise_deconv
            result = run(model, audio, layer=layer, filter=k)
            y = result.audio[0]
            level, gain = rms_dbfs(y), 0.0
            if normalise_to is not None:
                y, gain = normalise_loudness(y, target_dbfs=normalise_to)
            label = f"{layer} #{k} ({how}" + (f", {gain:+.1f} dB)" if normalise_to is not None else ")")
            return Heard(label, y, result.sample_rate, result.mask[0].float().numpy(), start,
                         start + len(audio) / result.sample_rate, level, gain)

        return self.submit(f"{how} of {layer} #{k}", work, on_result)

    def attribution(self, method: str, target: str, layer: str | None,
                    on_result: Callable[["Attribution"], None]) -> Job:
        """A CAM-family or saliency map over every analysed patch, joined along time."""
        rec, summary = self.recording, self.summary

        def work(ctx: JobContext) -> Attribution:
            import torch

            from musiclens.core.interpret import methods
            from musiclens.core.tagging import audio_to_patches

            meth = methods.get(method)  # any name or old spelling of the method table
            model = self._require_model()
            patches = audio_to_patches(model, rec.audio)  # (P, C, F, L)
            maps, completeness = [], []
            for i in range(len(patches)):
                ctx.progress(i / len(patches), f"{meth.label} for {target}: patch {i + 1}/{len(patches)}")
                x = patches[i:i + 1]
                info: dict = {}
                options = meth.supported(dict(meth.quick, info=info))
                m = meth.input_map(meth(model, x, target=target, layer=layer, **options), x.shape[-2:])
                if "completeness_error" in info:
                    completeness.append(float(info["completeness_error"].abs().max()))
                maps.append(m[0].detach().float().cpu())
            joined = torch.cat(maps, dim=-1).numpy()
            note = f"; completeness error ≤ {max(completeness):.3g}" if completeness else ""
            return Attribution(meth.name, target, layer if meth.needs_layer else None, joined, 0.0,
                               len(patches) * summary.patch_seconds, signed=meth.shown_signed, note=note)

        return self.submit(f"{method} for {target}", work, on_result)

    def dream(self, options: dict, on_result: Callable[["Dreamt"], None], *,
              on_progress: Callable[[JobProgress], None] | None = None,
              on_error: Callable[[str], None] | None = None) -> Job:
        """Run the engine's dream in the worker; ``options`` are :func:`dream`'s keywords
        plus ``start``: ``"patch"`` (the patch at ``patch``) or ``"sweep"``."""
        options = dict(options)
        start_kind = options.pop("start", "sweep")
        patch = options.pop("patch", 0)
        preview_every = max(1, int(options.get("steps", 100)) // 25)
        start_audio = self.patch_audio(patch)[0] if start_kind == "patch" and self.recording else None
        import threading

        stop = self._dream_stop = threading.Event()  # stop_dream(): finish with the dream so far

        def work(ctx: JobContext) -> Dreamt:
            from musiclens.app.worker import Cancelled
            from musiclens.core.interpret.dream import dream, sine_sweep

            model = self._require_model()
            fe = model.front_end
            seconds = model.patch_seconds
            start = start_audio if start_audio is not None else sine_sweep(fe, seconds=seconds)
            first = last = None
            for step in dream(model, start, cancel=lambda: ctx.cancelled or stop.is_set(), **options):
                first = first or step
                last = step
                if step.done:
                    break
                if step.step % preview_every == 0:
                    ctx.progress(step.progress, f"dreaming: step {step.step}/{step.total}, "
                                 f"objective {step.objective:.3f}", display_of(step.x[0], fe))
            if last is None or not last.done or ctx.cancelled:  # cancelled (not stopped): nothing to keep
                raise Cancelled()
            stopped = last.cancelled
            return Dreamt(last.audio, last.sample_rate, display_of(first.x[0], fe),
                          display_of(last.x[0], fe), first.objective, last.objective,
                          probabilities(model, first.scores, options.get("output", "logit")),
                          probabilities(model, last.scores, options.get("output", "logit")),
                          f"dream of {options.get('target')}" + (f" (stopped at step {last.step})" if stopped else ""),
                          steps=last.step, total=last.total, stopped=stopped)

        return self.submit("dream", work, on_result, on_progress=on_progress, on_error=on_error)

    def stop_dream(self) -> None:
        """Stop the running dream after its current step; it finishes with the dream so far
        (its audio is made from the input as it is), unlike a cancel, which keeps nothing."""
        stop = getattr(self, "_dream_stop", None)
        if stop is not None:
            stop.set()

    def kernels(self, on_result: Callable[[dict], None]) -> Job:
        """Kernel statistics of the current model (norms, dead kernels, batch-norm parameters)."""
        def work(ctx: JobContext) -> dict:
            from musiclens.core.interpret.kernels import kernel_stats

            return kernel_stats(self._require_model())

        return self.submit("kernel statistics", work, on_result)

    def similarity(self, other: str | Path, patch: int, on_result: Callable[["Similarity"], None]) -> Job:
        """Compare the current recording's patch with the same patch of ``other``, layer by layer."""
        other = Path(other)
        audio_a, start = self.patch_audio(patch)

        def work(ctx: JobContext) -> Similarity:
            import torch

            from musiclens.core import audio
            from musiclens.core.interpret.hooks import activations, as_map
            from musiclens.core.interpret.similarity import default_layers, layer_similarity

            model = self._require_model()
            fe = model.front_end
            ctx.progress(None, f"reading {other.name}")
            y, _ = audio.load(other, sr=fe.sample_rate, offset=start, duration=len(audio_a) / fe.sample_rate)
            if len(y) < len(audio_a):
                y = np.pad(y, (0, len(audio_a) - len(y)))
            xa = fe(torch.from_numpy(audio_a)[None])[..., : model.patch_frames]
            xb = fe(torch.from_numpy(y[: len(audio_a)])[None])[..., : model.patch_frames]
            ctx.progress(None, "comparing every layer")
            curve = layer_similarity(model, xa, xb)
            layers = [name for name in default_layers(model) if name in curve.layers]
            acts_a = activations(model, xa, layers)
            acts_b = activations(model, xb, layers)
            maps = [(name, as_map(acts_a[name])[0].mean(0).numpy(), as_map(acts_b[name])[0].mean(0).numpy())
                    for name in layers]
            maps.insert(0, ("input", display_of(xa[0], fe), display_of(xb[0], fe)))
            return Similarity(self.recording.path.name, other.name, start, curve.layers,
                              {k: v[0] for k, v in curve.values.items()}, maps, layer_kinds(model))

        return self.submit(f"similarity with {other.name}", work, on_result)

    def train(self, options: dict, out: Path, on_result: Callable[[dict], None], *,
              on_progress: Callable[[JobProgress], None] | None = None,
              on_error: Callable[[str], None] | None = None) -> Job:
        """Train a study architecture on a dataset folder; the model is saved to ``out``.

        ``options``: root, arch, task, epochs, and optionally lr, batch_size, patience
        (None = no early stopping), val_fraction, test_fraction (of the tracks), model_params.
        Runs on :attr:`long_worker`, so analyses go on meanwhile. Progress payloads carry
        per-epoch curves. Cancelled after an epoch ended, the best model so far is saved to
        ``out`` all the same and its summary (``"out"``, ``"best_epoch"``, ``"note"``) is the
        job's ``partial``."""
        def work(ctx: JobContext) -> dict:
            from musiclens.app.worker import Cancelled
            from musiclens.core.training import entry
            from musiclens.core.training.events import Finished, PrepareProgress
            from musiclens.core.training.loop import TrainConfig

            config = train_config(options, TrainConfig)
            val, test = float(options.get("val_fraction", 0.1)), float(options.get("test_fraction", 0.1))
            run = entry.train(options["root"], out, options.get("arch"), task=options["task"], config=config,
                              cancel=lambda: ctx.cancelled, fractions=(1.0 - val - test, val, test),
                              model_params=options.get("model_params"))
            # progress never raises here: a cancelled run ends its own way, keeping its best epoch
            for ev in run:
                if isinstance(ev, PrepareProgress):
                    ctx.progress(0.1 * ev.done / max(1, ev.total),
                                 f"preparing the data: {ev.done}/{ev.total} files"
                                 + (f" (skipped {ev.track}: {ev.error})" if ev.error else ""), check=False)
                elif isinstance(ev, Finished):
                    if ev.cancelled:
                        raise Cancelled(partial=ev.summary)
                    return ev.summary
                elif ev.kind == "batch":
                    done = (ev.epoch - 1 + ev.batch / max(1, ev.batches)) / ev.epochs
                    ctx.progress(0.1 + 0.85 * done, ev.line(), check=False)
                elif ev.kind == "epoch":
                    ctx.progress(0.1 + 0.85 * ev.epoch / ev.epochs, ev.line(), epoch_curves(ev.metrics),
                                 check=False)
            raise Cancelled()

        return self.submit(f"train {options['arch']}", work, on_result, on_progress=on_progress,
                           on_error=on_error, worker=self.long_worker)

    # ------------------------------------------------------------------ MIDI (piano roll)
    def _midi_model(self, name: str | None = None):
        """The MIDI model (loaded once, in the worker thread)."""
        from musiclens.core.models.midi_lstm import DEFAULT_MIDI_MODEL, load_midi_model

        name = name or DEFAULT_MIDI_MODEL
        if self.midi_model is None or name not in (self.midi_model.name, str(self.midi_model.source)):
            self.midi_model = load_midi_model(name)
        return self.midi_model

    def open_midi(self, path: str | Path, on_result: Callable[["MidiOpened"], None], *,
                  on_error: Callable[[str], None] | None = None, model: str | None = None) -> Job:
        """Read a MIDI file with the (bundled) MIDI model's spec."""
        path = Path(path)

        def work(ctx: JobContext) -> MidiOpened:
            ctx.progress(None, f"reading {path.name}")
            m = self._midi_model(model)
            notes = m.spec.read(path)
            m.spec.window(notes)  # too few notes: say so now
            return MidiOpened(path, notes, list(m.labels), m.name, m.spec.n_notes, list(notes.repairs))

        return self.submit(f"open {path.name}", work, on_result, on_error=on_error)

    def midi_classify(self, notes, target: int | None, revision: int,
                      on_result: Callable[["MidiClassified"], None]) -> Job:
        """Probabilities and per-note gradient saliency (``target``: class index, None = top)."""
        def work(ctx: JobContext) -> MidiClassified:
            import time

            from musiclens.core.interpret.midi_saliency import gradient_saliency

            t0 = time.perf_counter()
            m = self._midi_model()
            feats, mask = m.spec.window(notes)
            x, mk = m.tensors(feats, mask)
            p = m.predict(x, mk)[0].cpu().numpy()
            t = int(np.argmax(p)) if target is None else int(target)
            sal = gradient_saliency(m, x, mk, target=t)[0].detach().cpu().numpy()
            k = int(mask.sum())
            return MidiClassified(revision, list(m.labels), p, sal[:k], k, t, time.perf_counter() - t0)

        return self.submit(MIDI_CLASSIFY_JOB, work, on_result)

    def midi_flip(self, notes, to: str | int, on_result: Callable[["MidiFlip"], None], *,
                  steps: int = 300, on_progress: Callable[[JobProgress], None] | None = None,
                  on_error: Callable[[str], None] | None = None) -> Job:
        """Input optimisation: the smallest change to the window that makes the model say ``to``."""
        def work(ctx: JobContext) -> MidiFlip:
            from musiclens.core.interpret.midi_flip import flip_steps
            from musiclens.core.midi import through_file

            m = self._midi_model()
            last = ctx.drive(flip_steps(m, notes, to=to, steps=steps),
                             lambda s: JobProgress(s.step / s.steps, f"flip to {m.labels[m.label_index(to)]}: "
                                                f"step {s.step}, p = {s.target_probability:.2f}"))
            if last is None or last.best is None:
                raise Cancelled()
            result = last.best
            proposal = through_file(result.full_notes(notes))  # what saving it gives
            return MidiFlip(result, proposal, list(m.labels))

        return self.submit(MIDI_FLIP_JOB, work, on_result, on_progress=on_progress, on_error=on_error)

    def midi_audio(self, notes, on_result: Callable[[tuple[np.ndarray, int, str]], None],
                   sample_rate: int = 22050) -> Job:
        """Render notes to audio (SoundFont when installed, else the built-in synthesiser),
        with the file's tracks the model does not read (drums, ...) as they are."""
        def work(ctx: JobContext):
            from musiclens.core.midi import merge_notes, other_notes
            from musiclens.core.synth import synthesise

            ctx.progress(None, "synthesising")
            others = other_notes(notes)
            audio, how = synthesise(merge_notes(notes, others) if len(others) else notes, sample_rate)
            return audio, sample_rate, how

        return self.submit("synthesise MIDI", work, on_result)

    def class_similarity(self, folder: str | Path, on_result: Callable[["ClassSimilarity"], None]) -> Job:
        """Within-class similarity over a labelled folder (``folder/<label>/*.wav``): the first
        patch of every file, every pair of files of one class, mean curves per class."""
        folder = Path(folder)

        def work(ctx: JobContext) -> ClassSimilarity:
            import warnings

            import torch

            from musiclens.core import audio
            from musiclens.core.errors import MusicLensError
            from musiclens.core.interpret.similarity import class_pairs, pairwise_similarity

            model = self._require_model()
            fe = model.front_end
            files = sorted(f for f in folder.glob("*/*") if f.suffix.lower() in audio.AUDIO_EXTENSIONS)
            groups = class_pairs([f.parent.name for f in files])
            if not groups:
                raise MusicLensError(f"{folder}: no class folder holds two audio files to compare")
            files = [f for f in files if f.parent.name in groups]
            groups = class_pairs([f.parent.name for f in files])
            seconds = model.patch_seconds
            xs = []
            for i, f in enumerate(files):
                ctx.progress(0.5 * i / len(files), f"reading {f.parent.name}/{f.name}")
                y, _ = audio.load(f, sr=fe.sample_rate, duration=seconds)
                y = np.pad(y, (0, max(0, int(seconds * fe.sample_rate) - len(y))))
                with torch.no_grad():
                    xs.append(fe(torch.from_numpy(y)[None])[..., : model.patch_frames])
            pairs = [p for ps in groups.values() for p in ps]
            ctx.progress(0.5, f"comparing {len(pairs)} within-class pairs at every layer")
            curve = pairwise_similarity(model, xs, pairs)
            rows, start = {}, 0
            for label, ps in groups.items():
                rows[label] = slice(start, start + len(ps))
                start += len(ps)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (CKA of dense layers)
                per_class = {label: {k: np.nanmean(v[r], axis=0) for k, v in curve.values.items()}
                             for label, r in rows.items()}
            return ClassSimilarity(str(folder), curve.layers, per_class, {k: len(v) for k, v in groups.items()},
                                   layer_kinds(model))

        return self.submit(f"similarity within the classes of {folder.name}", work, on_result)

    # ------------------------------------------------------------------ helpers for panels
    def patch_at(self, seconds: float) -> int:
        """Index of the patch that contains ``seconds`` (clamped to the analysed patches)."""
        if self.analysis is None or not len(self.analysis.patch_starts_s):
            return 0
        i = int(np.searchsorted(self.analysis.patch_starts_s, seconds, side="right") - 1)
        return int(np.clip(i, 0, len(self.analysis.patch_starts_s) - 1))

    def patch_audio(self, patch: int) -> tuple[np.ndarray, float]:
        """(samples,) of one patch at the model's rate, and its start in seconds."""
        rec, s = self.recording, self.summary
        start = patch * s.patch_seconds
        a = int(round(start * rec.sample_rate))
        b = a + int(round(s.patch_seconds * rec.sample_rate))
        return rec.audio[a:b], start

    def _require_model(self):
        if self.model is None:
            from musiclens.core.errors import MusicLensError

            raise MusicLensError("no model is loaded yet")
        return self.model


# ---------------------------------------------------------------------- pure helpers
def summarise(model) -> ModelSummary:
    fe = model.front_end
    return ModelSummary(
        name=model.name,
        labels=list(model.labels),
        multilabel=model.multilabel,
        layers=[(info.name, info.group, info.kind) for info in model.layers.values()],
        patch_seconds=model.patch_seconds,
        front_end_kind=fe.kind,
        sample_rate=fe.sample_rate,
        source=str(model.source or ""),
    )


def probabilities(model, scores: np.ndarray, output: str = "logit") -> dict[str, float]:
    """Label -> probability from a model's (L,) logits (or probabilities already)."""
    import torch

    t = torch.as_tensor(np.asarray(scores))[None]
    p = model.probabilities(t)[0] if output == "logit" else t[0]
    return dict(zip(model.labels, (float(v) for v in p)))


def display_of(x, fe) -> np.ndarray:
    """One front-end output (C, F, T) tensor -> the (F, T) image the viewers draw."""
    import torch

    if fe.kind == "stft":
        return (10 * torch.log10((x[0] ** 2 + x[1] ** 2).clamp_min(1e-10))).float().numpy()
    return x[0].detach().float().numpy()


def layer_kinds(model) -> dict[str, str]:
    """Layer name -> its kind (conv, batchnorm, block, pool, dense, …) for grouping curves."""
    return {name: info.kind for name, info in model.layers.items()}


def train_config(options: dict, config_class):
    """The Training panel's ``options`` -> :class:`~musiclens.core.training.loop.TrainConfig`
    (``config_class``, passed in so this module never imports torch)."""
    config = config_class(epochs=int(options["epochs"]))
    if "lr" in options:
        config.lr = float(options["lr"])
    if "batch_size" in options:
        config.batch_size = int(options["batch_size"])
    if "patience" in options:
        config.patience = None if options["patience"] is None else int(options["patience"])
    return config


def epoch_curves(metrics: dict) -> dict[str, float]:
    """One epoch's metrics -> the four numbers the training plot draws."""
    train, val = metrics.get("train", {}), metrics.get("val", {})
    key = "roc_auc_mean" if "roc_auc_mean" in train else "accuracy"
    nan = float("nan")
    return {"train loss": train.get("loss", nan), "val loss": val.get("loss", nan),
            "train score": train.get(key, nan), "val score": val.get(key, nan)}


def make_recording(path: Path, y: np.ndarray, sr: int, model) -> Recording:
    """Front end of the whole file, in chunks, reduced to one (F, T) image for display."""
    import torch

    fe = model.front_end
    with torch.no_grad():
        x = fe(torch.from_numpy(y)[None])[0]  # (C, F, T)
    display = display_of(x, fe)
    caption = f"{fe.kind} front end, {fe.sample_rate} Hz" + (" (|STFT|² in dB)" if fe.kind == "stft" else "")
    return Recording(path, y, sr, display.astype(np.float32), fe.bin_frequencies(),
                     len(y) / sr, caption)
