"""Training data, split by concern:

* :mod:`.scan` — finding a labelled dataset in a folder (audio ``root/<label>/``,
  ``labels.csv``, musdb-style stems, MIDI ``root/<label>/*.mid``) and telling audio from MIDI;
* :mod:`.splits` — seeded train/val/test splits of **tracks** (:func:`split_by_track`);
* :mod:`.patches` — decoding tracks and cutting them into the model's patches (:func:`prepare`);
* :mod:`.cache` — the on-disk feature cache (:class:`FeatureCache`).

The names below are re-exported so callers write ``from musiclens.core.training import data``
and ``data.scan_folder(...)``.
"""

from musiclens.core.training.data.cache import CACHE_VERSION, FeatureCache, cache_dir, file_hash
from musiclens.core.training.data.patches import PatchSet, PreparedData, PrepareProgress, prepare, prepare_all
from musiclens.core.training.data.scan import (
    DATA_EXTENSIONS,
    MIX_NAMES,
    MUSDB_STEMS,
    TASKS,
    Dataset,
    Track,
    check_label,
    data_kind,
    load_dataset,
    scan_folder,
    scan_midi_folder,
    scan_stems,
)
from musiclens.core.training.data.splits import SPLITS, Split, split_by_track

__all__ = [
    "CACHE_VERSION",
    "DATA_EXTENSIONS",
    "MIX_NAMES",
    "MUSDB_STEMS",
    "SPLITS",
    "TASKS",
    "Track",
    "Dataset",
    "Split",
    "PatchSet",
    "PreparedData",
    "PrepareProgress",
    "FeatureCache",
    "cache_dir",
    "file_hash",
    "check_label",
    "data_kind",
    "load_dataset",
    "scan_folder",
    "scan_stems",
    "scan_midi_folder",
    "split_by_track",
    "prepare",
    "prepare_all",
]
