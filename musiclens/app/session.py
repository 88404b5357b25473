"""The session: what is open (a recording, a model), as a thin adapter. Every use case is a function or
generator of :mod:`musiclens.core.analyses` (Qt-free, shared with the commands); the session runs it on a
:class:`Worker`, forwards its ``Progress`` as ``JobProgress`` and emits signals. Torch loads in jobs only."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from musiclens.app.worker import Cancelled, Job, JobContext, JobProgress, Worker
from musiclens.core import analyses, mel_power
from musiclens.core.analyses import Analysis, Attribution, ClassSimilarity, Dreamt, Heard, LayerMaps, MidiClassified
from musiclens.core.analyses.results import MidiFlip, MidiOpened, ModelSummary, Recording, Similarity
from musiclens.core.errors import MusicLensError
from musiclens.core.resources import DEFAULT_MODEL  # noqa: F401  (defined once, in the core)

MIDI_CLASSIFY_JOB = "classify MIDI"
MIDI_FLIP_JOB = "flip MIDI"

OnProgress = Callable[[JobProgress], None] | None
OnError = Callable[[str], None] | None


def _drive(ctx: JobContext, steps: Generator[analyses.Progress, None, Any], *, check: bool = True) -> Any:
    """Run a use-case generator in a job, showing its steps (``check``: a cancel raises and closes it)."""
    return analyses.run(steps, lambda p: ctx.progress(p.fraction, p.message, p.payload, check=check))


def _use_case(session: Any, name: str, use_case: Callable, args: tuple, kwargs: dict, on_result, **kw) -> Job:
    """Submit a core use case (a generator of Progress) on ``session``'s loaded model as a job:
    ``use_case(model, *args, **kwargs)``."""
    return session.submit(
        name, lambda ctx: _drive(ctx, use_case(session._require_model(), *args, **kwargs)), on_result, **kw
    )


class Session(QObject):
    model_changed = Signal(object)  # ModelSummary
    recording_changed = Signal(object)  # Recording
    analysis_ready = Signal(object)  # Analysis
    status = Signal(str)
    error = Signal(str)
    progress = Signal(object)  # JobProgress of the running job

    def __init__(self, worker: Worker, parent: QObject | None = None, *, long_worker: Worker | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.long_worker = long_worker or worker  # training runs here, so analyses never wait behind it
        self.model = None  # LoadedModel, touched only in jobs (worker thread)
        self.summary: ModelSummary | None = None
        self.abilities: dict = {}  # of the loaded model: see load_model
        self.recording: Recording | None = None
        self.analysis: Analysis | None = None
        self._path: Path | None = None
        self.midi_model = None  # a LoadedModel of kind "midi", touched only in jobs
        self.midi_model_name: str | None = None  # the piano roll's model (None: the bundled one)
        self._dream_stop: threading.Event | None = None

    # ------------------------------------------------------------------ plumbing
    def submit(
        self,
        name: str,
        fn: Callable[[JobContext], Any],
        on_result: Callable[[Any], None],
        *,
        on_progress: OnProgress = None,
        on_error: OnError = None,
        worker: Worker | None = None,
    ) -> Job:
        """Run ``fn`` in the worker (or ``worker``); results and errors come back on the GUI thread."""

        def failed(message: str) -> None:
            self.error.emit(f"{name}: {message}")
            if on_error:
                on_error(message)

        def progressed(p: JobProgress) -> None:
            self.progress.emit(p)
            if on_progress:
                on_progress(p)

        return (worker or self.worker).run(name, fn, on_result=on_result, on_error=failed, on_progress=progressed)

    # ------------------------------------------------------------------ model and recording
    def load_model(
        self,
        name_or_dir: str,
        *,
        then: Callable[[], None] | None = None,
        device: str = "auto",
        trust_code: bool = False,
    ) -> Job:
        """Load a model on ``device`` (``"auto"``: the GPU when there is one; ``"cpu"``, ``"cuda"``);
        ``trust_code``: the user chose to run the model folder's Python code. :attr:`abilities` says
        what it can do: ``{"cam_layer": str | None, "limits": {feature: why not}, "lines": [...]}``
        (the CAM layer and the lines only for the user's own networks: a family's are known)."""

        def work(ctx: JobContext) -> tuple[ModelSummary, dict]:  # torch loads here, off the GUI thread
            steps = analyses.load_model_steps(name_or_dir, device=device, trust_code=trust_code)
            self.model, summary, abilities = _drive(ctx, steps)
            # the window is long-lived: load the compiled mel projection once (~1 s, here off
            # the GUI thread) so every mel front end after this one runs it
            mel_power.prepare()
            return summary, abilities

        def done(result: tuple[ModelSummary, dict]) -> None:
            summary, self.abilities = result
            self.summary = summary
            self.model_changed.emit(summary)
            self.status.emit(f"model {summary.name} ready ({len(summary.labels)} labels)")
            if self._path is not None:
                self.open(self._path)
            if then:
                then()

        return self.submit(f"load model {name_or_dir}", work, done)

    def user_model(self, verb: str, args: tuple, on_result: Callable, on_error: OnError, **kw: Any) -> Job:
        """The Open-model dialog's torch work: ``"guess"`` a draft ``model.json`` for a model file or folder
        (``args``: ``(path,)``, ``kw``: ``trust_code``; :func:`~musiclens.core.models.user_models.guess_meta`),
        or ``"write"`` and check a model folder (``(meta, folder)``, ``weights``, ``trust_code``:
        :func:`~musiclens.core.models.user_models.write_model_folder`)."""

        def work(ctx: JobContext) -> Any:
            from musiclens.core.models import user_models

            return (user_models.guess_meta if verb == "guess" else user_models.write_model_folder)(*args, **kw)

        return self.submit(f"{verb} model {Path(args[-1]).name}", work, on_result, on_error=on_error)

    def open(self, path: str | Path) -> Job:
        """Read a recording at the model's rate, draw it, then predict."""
        path = Path(path)

        def done(rec: Recording) -> None:
            self._path, self.recording, self.analysis = path, rec, None
            self.recording_changed.emit(rec)
            self.status.emit(f"opened {path.name}: {rec.duration_s:.1f} s")
            self.analyse()

        return _use_case(self, f"open {path.name}", analyses.open_recording_steps, (path,), {}, done)

    def analyse(self) -> Job:
        rec = self.recording

        def done(result: Analysis) -> None:
            self.analysis = result
            self.analysis_ready.emit(result)
            best = ", ".join(f"{t} {p:.2f}" for t, p in result.top[:3])
            self.status.emit(f"analysed {rec.path.name}: {best}")

        return self.submit(
            "predict", lambda ctx: _drive(ctx, analyses.predict_steps(self._require_model(), rec.audio)), done
        )

    # ------------------------------------------------------------------ looking inside
    def layer_maps(self, layer: str, patch: int, on_result: Callable[[LayerMaps], None]) -> Job:
        """Per-filter activation maps of ``layer`` on one patch and their auralisations' levels."""
        audio, start = self.patch_audio(patch)
        kwargs = {"patch": patch, "start_s": start}
        return _use_case(self, f"activations of {layer}", analyses.layer_maps_steps, (audio, layer), kwargs, on_result)

    def hear_filter(
        self,
        layer: str,
        k: int,
        patch: int,
        how: str,
        on_result: Callable[[Heard], None],
        *,
        normalise_to: float | None = None,
    ) -> Job:
        """Hear filter ``k`` on a patch (``how``: "activation" or "deconv"; ``normalise_to``: dBFS)."""
        audio, start = self.patch_audio(patch)
        return self.submit(
            f"{how} of {layer} #{k}",
            lambda ctx: analyses.hear_filter(
                self._require_model(), audio, layer, k, how=how, start_s=start, normalise_to=normalise_to
            ),
            on_result,
        )

    def attribution(self, method: str, target: str, layer: str | None, on_result: Callable[[Attribution], None]) -> Job:
        """A method of the table over every analysed patch, joined along time."""
        return _use_case(
            self,
            f"{method} for {target}",
            analyses.attribution_over_file,
            (self.recording.audio, method, target),
            {"layer": layer},
            on_result,
        )

    def hear_explanation(
        self, method: str, target: str, layer: str | None, top: float, soft: bool, on_result, *, attribution=None
    ) -> Job:
        """What the model used for ``target`` in the recording (top ``top`` % cells) and what it
        ignored, with its scores: :func:`musiclens.core.analyses.explanation.hear_explanation`
        (``attribution``: a map computed before, to mask again without recomputing it)."""
        from musiclens.core.analyses.explanation import hear_explanation

        return _use_case(
            self,
            f"hear {method} for {target}",
            hear_explanation,
            (self.recording.audio, method, target),
            {"top": top, "soft": soft, "layer": layer, "attribution": attribution},
            on_result,
        )

    def compare_methods(
        self, methods: list[str], target: str, layer: str | None, patch: int, options: dict, on_result, **kw
    ) -> Job:
        """Faithfulness of ``methods`` on one patch: :func:`musiclens.core.analyses.faithfulness.faithfulness`
        (``options``: its keywords, e.g. cells, steps, baseline, sanity_layers; ``kw``: on_progress, on_error)."""
        from musiclens.core.analyses.faithfulness import faithfulness

        audio, start = self.patch_audio(patch)
        kwargs = {"layer": layer, "start_s": start, **options}
        return _use_case(
            self, f"compare methods for {target}", faithfulness, (audio, methods, target), kwargs, on_result, **kw
        )

    def score_map(self, result: Attribution, patch: int, options: dict, on_result, **kw) -> Job:
        """Deletion/insertion AUCs of a shown map on one patch:
        :func:`musiclens.core.analyses.faithfulness.score_shown_map` (``kw``: on_progress, on_error)."""
        from musiclens.core.analyses.faithfulness import score_shown_map

        args = (self.recording.audio, result.values, result.method, result.target)
        kwargs = {"patch": patch, "layer": result.layer, **options}
        return _use_case(
            self, f"score {result.method} for {result.target}", score_shown_map, args, kwargs, on_result, **kw
        )

    def kernels(self, on_result: Callable[[dict], None]) -> Job:
        return self.submit("kernel statistics", lambda ctx: analyses.kernels(self._require_model()), on_result)

    def dream(
        self,
        options: dict,
        on_result: Callable[[Dreamt], None],
        *,
        on_progress: OnProgress = None,
        on_error: OnError = None,
    ) -> Job:
        """:func:`musiclens.core.analyses.dream` with ``options`` + ``start``: "patch" (at ``patch``) or "sweep"."""
        options = dict(options)
        start_kind, patch = options.pop("start", "sweep"), options.pop("patch", 0)
        start_audio = self.patch_audio(patch)[0] if start_kind == "patch" and self.recording else None
        stop = self._dream_stop = threading.Event()  # stop_dream(): finish with the dream so far

        def work(ctx: JobContext) -> Dreamt:
            result = _drive(
                ctx,
                analyses.dream(
                    self._require_model(), start_audio, stop=lambda: ctx.cancelled or stop.is_set(), **options
                ),
            )
            if ctx.cancelled:  # cancelled (not stopped): nothing to keep
                raise Cancelled()
            return result

        return self.submit("dream", work, on_result, on_progress=on_progress, on_error=on_error)

    def stop_dream(self) -> None:
        """Stop the running dream after its step: it ends with the dream so far (a cancel keeps nothing)."""
        if self._dream_stop is not None:
            self._dream_stop.set()

    # ------------------------------------------------------------------ similarity
    def similarity(self, other: str | Path, patch: int, on_result: Callable[[Similarity], None]) -> Job:
        """Compare the current recording's patch with the same patch of ``other``, layer by layer."""
        (audio_a, start), name_a = self.patch_audio(patch), self.recording.path.name
        return self.submit(
            f"similarity with {Path(other).name}",
            lambda ctx: _drive(
                ctx, analyses.pair_similarity(self._require_model(), audio_a, other, start_s=start, name_a=name_a)
            ),
            on_result,
        )

    def class_similarity(self, folder: str | Path, on_result: Callable[[ClassSimilarity], None]) -> Job:
        """Within-class similarity over ``folder/<label>/*.wav`` (first patch of each file)."""
        return _use_case(
            self,
            f"similarity within the classes of {Path(folder).name}",
            analyses.class_similarity,
            (Path(folder),),
            {"pad": True},
            on_result,
        )

    # ------------------------------------------------------------------ training
    def train(
        self,
        options: dict,
        out: Path,
        on_result: Callable[[dict], None],
        *,
        on_progress: OnProgress = None,
        on_error: OnError = None,
    ) -> Job:
        """Train on :attr:`long_worker` (``options``: root, arch, task, epochs, optionally lr, batch_size,
        patience, val_fraction, test_fraction, model_params); a cancelled run's summary is ``partial``."""

        def work(ctx: JobContext) -> dict:
            val, test = float(options.get("val_fraction", 0.1)), float(options.get("test_fraction", 0.1))
            run = analyses.train(
                options["root"],
                out,
                options.get("arch"),
                task=options["task"],
                config=analyses.train_config(options),
                cancel=lambda: ctx.cancelled,
                fractions=(1.0 - val - test, val, test),
                model_params=options.get("model_params"),
            )
            trained = _drive(ctx, run, check=False)  # a cancelled run ends its own way, keeping its best epoch
            if trained.cancelled:
                raise Cancelled(partial=trained.summary)
            return trained.summary

        return self.submit(
            f"train {options['arch']}",
            work,
            on_result,
            on_progress=on_progress,
            on_error=on_error,
            worker=self.long_worker,
        )

    # ------------------------------------------------------------------ studies (issue 21)
    def study(self, name: str, out: Path, on_result: Callable, *, quick: bool = False, data=None, **kw: Any) -> Job:
        """Run a study of :data:`musiclens.core.analyses.studies.STUDIES` into the report
        folder ``out`` on :attr:`long_worker` (``on_result``: its ``StudyReport``; ``kw``:
        on_progress, on_error); a cancel closes the study's generator."""
        from musiclens.core.analyses.studies import run_study

        return self.submit(
            f"study {name}",
            lambda ctx: _drive(ctx, run_study(name, out, quick=quick, data=data)),
            on_result,
            worker=self.long_worker,
            **kw,
        )

    # ------------------------------------------------------------------ MIDI (piano roll)
    def _midi_model(self, name: str | None = None):
        """The MIDI model (loaded once, in the worker thread): ``name``, else
        :attr:`midi_model_name` (a MIDI model trained in the window), else the bundled one."""
        return analyses.run(self._midi_model_steps(name))

    def _midi_model_steps(self, name: str | None = None) -> Generator[analyses.Progress, None, Any]:
        """:meth:`_midi_model` as a job's step (:func:`~musiclens.core.analyses.midi.midi_model_steps`)."""
        self.midi_model = yield from analyses.midi.midi_model_steps(name or self.midi_model_name, self.midi_model)
        return self.midi_model

    def open_midi(
        self,
        path: str | Path,
        on_result: Callable[[MidiOpened], None],
        *,
        on_error: OnError = None,
        model: str | None = None,
    ) -> Job:
        """Read a MIDI file with the (bundled) MIDI model's spec (loading the model first, when it is not loaded)."""
        return self.submit(
            f"open {Path(path).name}",
            lambda ctx: _drive(
                ctx, analyses.midi.on_midi_model(self._midi_model_steps(model), analyses.open_midi_steps, path)
            ),
            on_result,
            on_error=on_error,
        )

    def midi_scope(self, piece, on_result: Callable[[dict | None], None]) -> Job:
        """How far a piece (the notes opened, or a file's path) lies from the MIDI model's
        training pieces (None: unknown); notes are not read again."""
        from musiclens.core.analyses.midi import training_distance

        return self.submit(
            f"compare {Path(getattr(piece, 'source', piece) or 'piece').name} with the training pieces",
            lambda ctx: training_distance(self._midi_model(), piece),
            on_result,
            on_error=lambda message: None,
        )

    def midi_classify(
        self, notes, target: int | None, revision: int, on_result: Callable[[MidiClassified], None]
    ) -> Job:
        """Probabilities and per-note gradient saliency (``target``: class index, None = top)."""
        return self.submit(
            MIDI_CLASSIFY_JOB,
            lambda ctx: _drive(
                ctx,
                analyses.classify_notes_steps(
                    self._midi_model(), notes, target=target, revision=revision, method="gradient"
                ),
            ),
            on_result,
        )

    def midi_flip(
        self,
        notes,
        to: str | int,
        on_result: Callable[[MidiFlip], None],
        *,
        steps: int = 300,
        on_progress: OnProgress = None,
        on_error: OnError = None,
    ) -> Job:
        """Input optimisation: the smallest change to the window that makes the model say ``to``."""

        def work(ctx: JobContext) -> MidiFlip:
            if (result := _drive(ctx, analyses.flip(self._midi_model(), notes, to, steps=steps))) is None:
                raise Cancelled()
            return result

        return self.submit(MIDI_FLIP_JOB, work, on_result, on_progress=on_progress, on_error=on_error)

    def midi_audio(
        self, notes, on_result: Callable[[tuple[np.ndarray, int, str]], None], sample_rate: int = 22050
    ) -> Job:
        """Render notes (and the file's other tracks) to audio: :func:`musiclens.core.analyses.render`."""
        return self.submit(
            "synthesise MIDI", lambda ctx: _drive(ctx, analyses.render_steps(notes, sample_rate)), on_result
        )

    # ------------------------------------------------------------------ helpers for panels
    def patch_at(self, seconds: float) -> int:
        """Index of the patch that contains ``seconds`` (clamped to the analysed patches)."""
        return 0 if self.analysis is None else analyses.patch_at(self.analysis.patch_starts_s, seconds)

    def patch_audio(self, patch: int) -> tuple[np.ndarray, float]:
        """(samples,) of one patch at the model's rate, and its start in seconds."""
        return analyses.patch_audio(self.recording, self.summary.patch_seconds, patch)

    def _require_model(self):
        if self.model is None:
            raise MusicLensError("no model is loaded yet")
        return self.model
