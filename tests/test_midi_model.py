"""MIDI folder datasets, the LSTM family, training (cancellable), saving and loading."""

from __future__ import annotations

import json

import pytest
import torch

from midi_tunes import make_folder, write_piece
from musiclens.core.errors import MusicLensError
from musiclens.core.models import registry
from musiclens.core.models.midi_lstm import (
    NoteFeatureSpec,
    build_midi_lstm,
    load_midi_model,
    save_midi_model,
)
from musiclens.core.training.data import scan_midi_folder, split_by_track
from musiclens.core.training.midi import load_folder, train_midi_lstm

SPEC = NoteFeatureSpec(n_notes=16, short="drop", drop_drums=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = make_folder(tmp_path_factory.mktemp("midi_ds"))
    (root / "low" / "short.mid").parent.mkdir(exist_ok=True)
    write_piece(root / "low" / "short.mid", low=True, n_notes=5, seed=7)  # too short for 16 notes
    (root / "high" / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00")  # truncated header
    (root / "high" / "notes.txt").write_text("not a midi file, ignored by extension")
    return root


@pytest.fixture(scope="module")
def dataset(folder):
    steps = list(load_folder(folder, SPEC, seed=3))
    return steps, steps[-1].data


@pytest.fixture(scope="module")
def trained(dataset):
    torch.manual_seed(0)
    steps = [
        ev
        for ev in train_midi_lstm(dataset[1], hidden=16, layers=1, epochs=12, lr=1e-2, seed=0, name="tiny")
        if ev.kind != "batch"
    ]  # one "epoch" event per epoch, the last one "done"
    return steps


def test_scan_and_split_by_file(folder):
    ds = scan_midi_folder(folder)
    assert ds.labels == ["high", "low"] and ds.kind == "midi"
    assert len(ds.tracks) == 22  # 11 + 11 .mid files; notes.txt ignored
    split = split_by_track(ds, seed=3)
    assert split.counts() == {"train": 18, "val": 2, "test": 2}  # per label: 11 -> 9/1/1
    ids = [i for v in split.ids().values() for i in v]
    assert len(set(ids)) == len(ids) == 22  # every file in exactly one split
    for tracks in split.tracks.values():
        assert sorted({t.labels[0] for t in tracks}) == [0, 1]  # stratified
    assert split_by_track(ds, seed=3).ids() == split.ids()
    assert split_by_track(ds, seed=4).ids() != split.ids()


def test_scan_needs_two_labels(tmp_path):
    (tmp_path / "only").mkdir()
    write_piece(tmp_path / "only" / "a.mid", low=True, n_notes=4, seed=0)
    with pytest.raises(MusicLensError, match="at least two"):
        scan_midi_folder(tmp_path)


def test_load_folder_progress_and_skips(dataset):
    steps, data = dataset
    assert [s.done for s in steps] == list(range(1, 23))
    assert all(s.total == 22 for s in steps)
    skipped = {p.name: why for p, why in data.skipped}
    assert set(skipped) == {"short.mid", "broken.mid"}
    assert "5 notes" in skipped["short.mid"] and "broken.mid" in skipped["broken.mid"]
    n = sum(len(y) for y in data.y.values())
    assert n == 20
    assert data.x["train"].shape[1:] == (16, 3) and data.mask["train"].all()


def test_training_learns_and_reports(trained, dataset):
    final = trained[-1]
    assert final.kind == "done" and len(trained) == 12
    assert [s.epoch for s in trained] == list(range(1, 13))
    assert [s.kind for s in trained[:-1]] == ["epoch"] * 11
    metrics = final.model.provenance["metrics"]
    assert metrics["test_accuracy"] == 1.0, metrics
    assert metrics["counts"] == dataset[1].counts()
    assert trained[-1].metrics["train"]["loss"] < trained[0].metrics["train"]["loss"]
    spec = final.model.spec
    assert spec.mean[0] == pytest.approx(float(dataset[1].x["train"][..., 0].mean()), abs=1e-3)


def test_training_can_be_cancelled(dataset):
    gen = train_midi_lstm(dataset[1], hidden=8, layers=1, epochs=50, seed=0)
    first = []
    while len(first) < 2:
        ev = next(gen)
        if ev.kind == "epoch":
            first.append(ev)
    gen.close()
    assert [s.epoch for s in first] == [1, 2] and not first[-1].final
    with pytest.raises(StopIteration):
        next(gen)
    x, m = first[-1].model.tensors(dataset[1].x["test"], dataset[1].mask["test"])
    assert first[-1].model.predict(x, m).shape == (len(dataset[1].y["test"]), 2)


def test_padding_never_changes_the_output():
    torch.manual_seed(0)
    net, layers = build_midi_lstm(n_labels=3, hidden=12, layers=2)
    net.eval()
    x = torch.rand(2, 10, 3) * torch.tensor([60.0, 0.5, 0.5]) + torch.tensor([40.0, 0, 0.05])
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, 6:] = False
    y1 = net(x, mask)
    x2 = x.clone()
    x2[0, 6:] = torch.tensor([127.0, 9.0, 9.0])  # garbage in the padding
    y2 = net(x2, mask)
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(y1[0], net(x[:1, :6])[0])  # = the unpadded 6-note sequence
    assert [layer.name for layer in layers] == ["normalise", "lstm", "output"]


def test_family_is_registered_for_the_registry():
    net, _ = registry.build({"family": "midi_lstm", "params": {"n_labels": 2, "hidden": 8, "layers": 1}})
    assert net.lstm.hidden_size == 8 and net.head.out_features == 2


def test_save_load_round_trip(trained, dataset, tmp_path):
    model = trained[-1].model
    folder = save_midi_model(model, tmp_path / "tiny")
    meta = json.loads((folder / "model.json").read_text())
    assert meta["format"] == "musiclens-model/1" and meta["input"] == "midi"
    assert meta["note_features"]["n_notes"] == 16 and meta["note_features"]["short"] == "drop"
    assert meta["note_features"]["mean"] == list(model.spec.mean)
    assert meta["provenance"]["metrics"]["test_accuracy"] == 1.0
    back = load_midi_model(folder)
    assert back.labels == ["high", "low"] and back.spec == model.spec
    x, m = back.tensors(dataset[1].x["test"], dataset[1].mask["test"])
    torch.testing.assert_close(back.predict(x, m), model.predict(x, m))
    # the registry loads it too, into the same LoadedModel class as audio models
    same = registry.load(folder)
    assert same.kind == "midi" and same.spec == model.spec and same.labels == back.labels
    torch.testing.assert_close(same.predict(x, m), model.predict(x, m))
    with pytest.raises(MusicLensError, match="is a midi model, not an audio model"):
        registry.load(folder, kind="audio")
    with pytest.raises(MusicLensError, match="is a midi model: it has no audio front end"):
        _ = same.front_end


def test_load_errors(trained, tmp_path):
    with pytest.raises(MusicLensError, match="no MIDI model named"):
        load_midi_model("no_such_model_here")
    folder = save_midi_model(trained[-1].model, tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    meta["architecture"]["params"]["hidden"] = 32
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(MusicLensError, match="don't fit"):
        load_midi_model(folder)
    del meta["note_features"]
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(MusicLensError, match="'note_features' is missing"):
        load_midi_model(folder)
    with pytest.raises(MusicLensError, match="not a MIDI model"):
        load_midi_model("MSD_musicnn")  # a bundled audio model


def test_spec_transform_inverse_and_validation():
    spec = NoteFeatureSpec(mean=(60.0, 1.0, 1.5), std=(10.0, 0.5, 0.7))
    x = torch.tensor([[[64.0, 0.0, 0.25], [40.0, 1.5, 0.05]]], dtype=torch.float64)
    torch.testing.assert_close(spec.inverse(spec.transform(x)), x)
    z = spec.transform(x)
    assert z[0, 0, 0].item() == pytest.approx(0.4)
    assert z[0, 0, 1].item() == pytest.approx((0.0 - 1.0) / 0.5)  # log1p(0) = 0
    assert NoteFeatureSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(MusicLensError):
        NoteFeatureSpec(short="truncate")
    with pytest.raises(MusicLensError, match="unknown"):
        NoteFeatureSpec.from_dict({"n_notes": 10, "colour": "red"})
