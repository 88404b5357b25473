"""The use cases, Qt-free: what the window and the ``musiclens`` commands both run.

Each use case is a function that returns a result dataclass (:mod:`.results`), or — when it
takes long — a generator that yields :class:`musiclens.core.progress.Progress` steps and
returns its result (drive one with :func:`run`; cancel it by closing it); ``x_steps`` is
the generator of a function ``x`` that also exists plain. The window's
session submits these to its worker and forwards the steps; a command prints them.

=====================  ============================================================
recording              load_model_steps, open_recording (_steps), summarise,
                       patch_audio/patch_at, display_of
predict                predict (_steps), predict_file -> Analysis
attribution            attribute (one input), attribution_over_file -> Attribution
                       (raw-waveform models: WaveformAttribution, one value per sample)
layers                 layer_maps (_steps) -> LayerMaps, hear_filter -> Heard, kernels
similarity             pair_similarity -> Similarity, similarity_of_files ->
                       PairwiseSimilarity, class_similarity -> ClassSimilarity
dream                  dream -> Dreamt
flip                   flip_recording -> RecordingFlip (audio)
midi                   open_midi (_steps), classify_notes (_steps), flip -> MidiFlip,
                       render (_steps)
training               train -> Trained, evaluate (the evaluate command's dict)
batch                  batch (a folder -> summary.parquet + array shards; resumable,
                       ``workers`` processes), read_table -> BatchTable, read_array
=====================  ============================================================

No module here imports torch at import time (the window imports the result types before
torch loads); none imports Qt.
"""

from __future__ import annotations

from musiclens.core.analyses.attribution import WaveformAttribution, attribute, attribution_over_file
from musiclens.core.analyses.dream import dream
from musiclens.core.analyses.flip import flip_recording
from musiclens.core.analyses.layers import hear_filter, kernels, layer_maps, layer_maps_steps
from musiclens.core.analyses.midi import (
    classify_notes,
    classify_notes_steps,
    flip,
    open_midi,
    open_midi_steps,
    render,
    render_steps,
)
from musiclens.core.analyses.predict import predict, predict_file, predict_steps
from musiclens.core.analyses.recording import (
    display_of,
    layer_kinds,
    load_model_steps,
    make_recording,
    open_recording,
    open_recording_steps,
    patch_at,
    patch_audio,
    probabilities,
    summarise,
)
from musiclens.core.analyses.results import (
    Analysis,
    Attribution,
    ClassSimilarity,
    Dreamt,
    Heard,
    LayerMaps,
    MidiClassified,
    MidiFlip,
    MidiOpened,
    ModelSummary,
    PairwiseSimilarity,
    Recording,
    RecordingFlip,
    Similarity,
    Trained,
    mean_curves,
)
from musiclens.core.analyses.similarity import (
    class_similarity,
    pair_similarity,
    read_features,
    similarity_of_files,
)
from musiclens.core.analyses.training import epoch_curves, evaluate, train, train_config
from musiclens.core.progress import Progress, run

__all__ = [
    "Analysis",
    "Attribution",
    "ClassSimilarity",
    "Dreamt",
    "Heard",
    "LayerMaps",
    "MidiClassified",
    "MidiFlip",
    "MidiOpened",
    "ModelSummary",
    "PairwiseSimilarity",
    "Progress",
    "Recording",
    "RecordingFlip",
    "Similarity",
    "Trained",
    "WaveformAttribution",
    "attribute",
    "attribution_over_file",
    "class_similarity",
    "classify_notes",
    "classify_notes_steps",
    "display_of",
    "dream",
    "epoch_curves",
    "evaluate",
    "flip",
    "flip_recording",
    "hear_filter",
    "kernels",
    "layer_kinds",
    "layer_maps",
    "layer_maps_steps",
    "load_model_steps",
    "make_recording",
    "mean_curves",
    "open_midi",
    "open_midi_steps",
    "open_recording",
    "open_recording_steps",
    "pair_similarity",
    "patch_at",
    "patch_audio",
    "predict",
    "predict_file",
    "predict_steps",
    "probabilities",
    "read_features",
    "render",
    "render_steps",
    "run",
    "similarity_of_files",
    "summarise",
    "train",
    "train_config",
]
