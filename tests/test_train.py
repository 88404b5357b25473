"""The training loop: learning, cancel within one batch, resume, seeds, early stopping,
metrics by hand, multi-label, the CLI commands, and the real-data tier (GTZAN, JTD stems)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.features import logmel_frontend
from musiclens.core.models import registry, study
from musiclens.core.training import data, entry
from musiclens.core.training import events as training_events
from musiclens.core.training import loop as train

torch.set_num_threads(1)
SR = 8000
FE = logmel_frontend(sample_rate=SR, n_fft=256, hop=128, n_mels=16, top_db=None)
PATCH_S = 0.24  # 1920 samples -> 16 frames


def write_tone(path: Path, freq: float, seconds: float, *, sr: int = SR, seed: int = 0, amp: float = 0.3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(seed)
    y = amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6)) + 0.02 * rng.standard_normal(len(t))
    sf.write(str(path), y.astype(np.float32), sr)


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> data.PreparedData:
    """2 classes (low / high tones), 6 tracks each, 1.5 s -> 5 patches of 16 frames per track."""
    root = tmp_path_factory.mktemp("tones")
    for k, (lab, base) in enumerate((("high", 2000.0), ("low", 250.0))):
        for i in range(6):
            write_tone(root / lab / f"{i}.wav", base * (1 + 0.05 * i), 1.5, seed=10 * k + i)
    ds = data.scan_folder(root)
    split = data.split_by_track(ds, seed=0)
    return data.prepare_all(ds, split, FE, 16, cache=data.FeatureCache(root / "_cache"))


def new_model(arch: str = "vanilla-cnn", seed: int = 0, **kw) -> registry.LoadedModel:
    torch.manual_seed(seed)
    return study.create(arch, ["high", "low"], front_end=FE, patch_seconds=PATCH_S, **kw)


def cfg(**kw) -> train.TrainConfig:
    base = dict(epochs=4, batch_size=8, lr=3e-3, patience=None, seed=0, device="cpu")
    return train.TrainConfig(**(base | kw))


def last(evs) -> training_events.Progress:
    return training_events.run(evs)


def state(m) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.net.state_dict().items()}


# ----------------------------------------------------------------------------- learning
def test_training_learns_an_easy_task_and_reports_every_step(tones):
    m = new_model()
    assert tones.counts()["train"] == {"tracks": 8, "patches": 40}
    events = list(train.train(m, tones, cfg(epochs=5)))
    kinds = [e.kind for e in events]
    assert kinds.count("batch") == 5 * 5 and kinds.count("epoch") == 5 and kinds[-1] == "done"
    ep = [e for e in events if e.kind == "epoch"]
    assert [e.epoch for e in ep] == [1, 2, 3, 4, 5]
    assert set(ep[0].metrics["val"]) >= {"accuracy", "per_class_accuracy", "confusion", "track_accuracy", "loss"}
    assert ep[-1].metrics["train"]["loss"] < ep[0].metrics["train"]["loss"]
    assert ep[0].patches_per_second > 0
    done = events[-1]
    assert done.model is m and not m.net.training and done.stopped == "epochs"
    test = train.evaluate(m, tones.sets["test"])
    assert test["accuracy"] >= 0.9 and test["track_accuracy"] == 1.0
    assert np.array(test["confusion"]).sum() == len(tones.sets["test"])
    assert m.provenance["epochs_run"] == 5 and m.provenance["trained"] is True


def test_input_norm_is_fitted_on_the_training_patches(tones):
    m = new_model()
    train.fit_input_norm(m, tones.sets["train"])
    x = tones.sets["train"].inputs(np.arange(len(tones.sets["train"])))
    assert float(m.net.norm.mean) == pytest.approx(float(x.mean()), rel=1e-4)
    assert float(m.net.norm.std) == pytest.approx(float(x.std(unbiased=False)), rel=1e-4)
    z = m.net.norm(x)
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-4) and float(z.std()) == pytest.approx(1.0, rel=1e-3)


# ----------------------------------------------------------------------------- cancel, resume, seeds
@pytest.mark.parametrize("at_batch", [1, 3])
def test_cancel_stops_within_one_batch(tones, at_batch):
    m = new_model()
    stop = threading.Event()
    seen = []
    batches_after_cancel = 0
    for ev in train.train(m, tones, cfg(epochs=3), cancel=stop):
        seen.append(ev)
        if stop.is_set() and ev.kind == "batch":
            batches_after_cancel += 1
        if ev.kind == "batch" and ev.epoch == 2 and ev.batch == at_batch:
            stop.set()
    assert batches_after_cancel == 0
    assert seen[-1].kind == "cancelled" and seen[-1].stopped == "cancelled"
    assert seen[-1].epoch == 2 and seen[-1].batch == at_batch  # batches done in that epoch
    assert seen[-2].kind == "batch" and seen[-2].batch == at_batch
    assert seen[-1].model is m and not m.net.training


def test_cancel_accepts_a_callable(tones):
    calls = []
    ev = last(train.train(new_model(), tones, cfg(epochs=2), cancel=lambda: len(calls.append(1) or calls) > 2))
    assert ev.kind == "cancelled" and ev.epoch == 1 and ev.batch == 2


def test_resume_reproduces_an_uninterrupted_run(tones, tmp_path):
    straight = new_model()
    a = last(train.train(straight, tones, cfg(epochs=4, checkpoint_dir=str(tmp_path / "a"))))
    first = new_model()
    last(train.train(first, tones, cfg(epochs=2, checkpoint_dir=str(tmp_path / "b"))))
    saved = json.loads((tmp_path / "b" / train.CHECKPOINT_STATE).read_text())
    assert saved["epoch"] == 2 and len(saved["history"]) == 2
    assert {p.name for p in (tmp_path / "b").iterdir()} == {
        "model.safetensors",
        "best.safetensors",
        "optimizer.safetensors",
        "state.json",
    }
    resumed = new_model(seed=99)  # different initial weights: everything comes from the checkpoint
    b = last(train.train(resumed, tones, cfg(epochs=4, checkpoint_dir=str(tmp_path / "b")), resume=tmp_path / "b"))
    sa, sb = state(straight), state(resumed)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [h["train"]["loss"] for h in a.history] == [h["train"]["loss"] for h in b.history]
    assert a.best_epoch == b.best_epoch


def test_cancel_then_resume_gives_the_same_model(tones, tmp_path):
    straight = new_model()
    last(train.train(straight, tones, cfg(epochs=3)))
    m = new_model()
    stop = threading.Event()
    for ev in train.train(m, tones, cfg(epochs=3, checkpoint_dir=str(tmp_path / "c")), cancel=stop):
        if ev.kind == "batch" and ev.epoch == 3 and ev.batch == 2:
            stop.set()
    assert ev.kind == "cancelled"
    again = new_model(seed=5)
    last(train.train(again, tones, cfg(epochs=3, checkpoint_dir=str(tmp_path / "c")), resume=tmp_path / "c"))
    sa, sb = state(straight), state(again)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cancel_keeps_the_best_weights_so_far(tones):
    m = new_model()
    stop = threading.Event()
    at_epoch = {}
    for ev in train.train(m, tones, cfg(epochs=6), cancel=stop):
        if ev.kind == "epoch":
            at_epoch[ev.epoch] = state(m)
        if ev.kind == "batch" and ev.epoch == 3 and ev.batch == 2:  # mid-epoch: weights of no epoch
            stop.set()
    assert ev.kind == "cancelled" and ev.epoch == 3 and ev.best_epoch in (1, 2)
    assert ev.model is m and not m.net.training
    best, now = at_epoch[ev.best_epoch], state(m)
    assert all(torch.equal(now[k], best[k]) for k in best)  # the best epoch's weights, not the last batch's
    assert m.provenance["stopped"] == "cancelled"
    assert m.provenance["note"] == f"cancelled at epoch 3, best val epoch {ev.best_epoch}"


def test_cancelled_run_on_a_folder_saves_the_best_model_so_far(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICLENS_CACHE", str(tmp_path / "cache"))
    root = genre_22k(tmp_path / "g")
    config = train.TrainConfig(epochs=10, batch_size=4, patience=None, device="cpu")
    out = tmp_path / "model"
    stop = threading.Event()
    events = []
    for ev in entry.train_on_folder("vanilla-cnn", root, config=config, out=out, cancel=stop):
        events.append(ev)
        if getattr(ev, "kind", "") == "batch" and ev.epoch == 3 and ev.batch == 1:
            stop.set()
    fin = events[-1]
    assert isinstance(fin, training_events.Finished) and fin.cancelled
    best = fin.summary["best_epoch"]
    assert best in (1, 2) and fin.summary["stopped"] == "cancelled"
    assert fin.summary["out"] == str(out) and 0.0 <= fin.summary["val_accuracy"] <= 1.0
    loaded = registry.load(out)  # a model folder like any other
    saved, kept = state(loaded), state(fin.model)
    assert saved.keys() == kept.keys() and all(torch.equal(saved[k], kept[k].cpu()) for k in kept)
    meta = json.loads((out / "model.json").read_text())
    assert meta["provenance"]["note"] == f"cancelled at epoch 3, best val epoch {best}"
    assert meta["provenance"]["stopped"] == "cancelled" and meta["provenance"]["best_epoch"] == best
    # cancelled before any epoch ended: nothing worth keeping is saved
    stop.clear()
    out2 = tmp_path / "model2"
    for ev in entry.train_on_folder("vanilla-cnn", root, config=config, out=out2, cancel=stop):
        if getattr(ev, "kind", "") == "batch" and ev.epoch == 1 and ev.batch == 1:
            stop.set()
    assert isinstance(ev, training_events.Finished) and ev.cancelled and "out" not in ev.summary
    assert not out2.exists()


def test_resume_refuses_a_checkpoint_of_another_model(tones, tmp_path):
    last(train.train(new_model(), tones, cfg(epochs=1, checkpoint_dir=str(tmp_path / "k"))))
    with pytest.raises(MusicLensError, match="for a different model"):
        last(train.train(new_model("gap-cnn"), tones, cfg(epochs=2), resume=tmp_path / "k"))
    with pytest.raises(MusicLensError, match="not a training checkpoint"):
        last(train.train(new_model(), tones, cfg(epochs=2), resume=tmp_path))


def test_runs_are_seeded(tones):
    a, b, c = new_model(), new_model(), new_model()
    last(train.train(a, tones, cfg(epochs=2, seed=1)))
    last(train.train(b, tones, cfg(epochs=2, seed=1)))
    last(train.train(c, tones, cfg(epochs=2, seed=2)))
    sa, sb, sc = state(a), state(b), state(c)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["dense2.weight"], sc["dense2.weight"])


def test_early_stopping_restores_the_best_epoch(tones):
    m = new_model()
    ev = last(train.train(m, tones, cfg(epochs=10, lr=1e-9, patience=2)))
    # with a learning rate of 1e-9 nothing improves after epoch 1
    assert ev.stopped == "early stopping" and ev.best_epoch == 1 and len(ev.history) == 3


def test_bad_settings_and_mismatched_data(tones):
    with pytest.raises(ParameterError, match="epochs must be >= 1"):
        last(train.train(new_model(), tones, cfg(epochs=0)))
    with pytest.raises(ParameterError, match="needs masked-cnn"):
        last(train.train(new_model(), tones, cfg(filter_loss=1.0)))
    other = study.create("vanilla-cnn", ["a", "b"], front_end=FE, patch_seconds=PATCH_S)
    with pytest.raises(MusicLensError, match="labels"):
        last(train.train(other, tones, cfg()))
    longer = study.create("vanilla-cnn", ["high", "low"], front_end=FE, patch_seconds=0.5)
    with pytest.raises(MusicLensError, match="the model takes"):
        last(train.train(longer, tones, cfg()))


def test_filter_loss_is_added_for_the_masked_cnn(tones):
    plain = last(train.train(new_model("masked-cnn"), tones, cfg(epochs=1)))
    with_fl = last(train.train(new_model("masked-cnn", filter_tau=0.05), tones, cfg(epochs=1, filter_loss=5.0)))
    assert plain.history[0]["train"]["loss"] != pytest.approx(with_fl.history[0]["train"]["loss"])


# ----------------------------------------------------------------------------- metrics
def test_roc_auc_and_average_precision_by_hand():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    # positive-negative pairs ranked right: (0.35>0.1), (0.8>0.1), (0.8>0.4) of 4 -> 0.75
    assert train.roc_auc(y, s) == pytest.approx(0.75)
    # ranking 0.8(+) 0.4(-) 0.35(+) 0.1(-): AP = 1/2·1 + 1/2·2/3
    assert train.average_precision(y, s) == pytest.approx(0.5 + 1 / 3)
    assert train.roc_auc(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)  # ties count 1/2
    assert np.isnan(train.roc_auc(np.ones(3), np.arange(3.0)))
    assert np.isnan(train.average_precision(np.zeros(3), np.arange(3.0)))


def test_metrics_match_scikit_learn_on_random_scores():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.integers(0, 2, 50)
        s = np.round(rng.random(50), 1)  # with ties
        assert train.roc_auc(y, s) == pytest.approx(metrics.roc_auc_score(y, s))
        assert train.average_precision(y, s) == pytest.approx(metrics.average_precision_score(y, s))


def _patchset(y, track, multilabel=False):
    y = np.asarray(y, dtype=np.float32 if multilabel else np.int64)
    return data.PatchSet(
        "features",
        FE,
        16,
        [np.zeros((1, 16, 16), np.float32)],
        np.zeros((len(y), 2), np.int64),
        y,
        np.asarray(track),
        [f"t{i}" for i in range(max(track) + 1)],
    )


def test_confusion_matrix_per_class_and_track_accuracy_by_hand():
    ps = _patchset([0, 0, 0, 1, 1, 2], [0, 0, 1, 2, 2, 3])
    probs = np.array(
        [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.1, 0.3, 0.6], [0.5, 0.1, 0.4]]
    )
    m = train.metrics_from(probs, ps, ["a", "b", "c"])
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [1, 0, 0]]
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["per_class_accuracy"] == pytest.approx({"a": 2 / 3, "b": 0.5, "c": 0.0})
    # tracks: t0 mean [.5,.4,.1] -> a (right); t1 -> a (right); t2 mean [.1,.55,.35] -> b (right); t3 -> a (wrong)
    assert m["track_accuracy"] == pytest.approx(3 / 4)
    ml = _patchset([[1, 0], [0, 1], [1, 1], [0, 0]], [0, 1, 2, 3], multilabel=True)
    # bass: positives .8, .15 vs negatives .2, .1 -> 3 of 4 pairs ranked right
    mm = train.metrics_from(np.array([[0.9, 0.2], [0.3, 0.8], [0.6, 0.15], [0.1, 0.1]]), ml, ["drums", "bass"])
    assert mm["roc_auc"]["drums"] == pytest.approx(1.0) and mm["roc_auc"]["bass"] == pytest.approx(0.75)
    assert mm["roc_auc_mean"] == pytest.approx(0.875) and "accuracy" not in mm


# ----------------------------------------------------------------------------- multi-label
def test_choi_cnn_trains_multi_label_on_stem_mixes(tmp_path):
    fe = logmel_frontend(sample_rate=SR, n_fft=256, hop=32, n_mels=24, top_db=None)  # 160 frames = 0.64 s
    freqs = {"drums": 150.0, "bass": 60.0, "vocals": 900.0, "other": 2500.0}
    for split, tracks in (("train", range(3)), ("test", range(3, 4))):
        for i in tracks:
            for k, (stem, f) in enumerate(freqs.items()):
                write_tone(tmp_path / "m" / split / f"t{i}" / f"{stem}.wav", f * (1 + 0.03 * i), 1.4, seed=k + 7 * i)
    ds = data.load_dataset(tmp_path / "m", task="instruments")
    split = data.split_by_track(ds, seed=0)
    torch.manual_seed(0)
    m = study.create("choi-cnn", ds.labels, multilabel=True, front_end=fe, patch_seconds=0.64)
    assert m.patch_frames == 161
    prepared = data.prepare_all(ds, split, fe, m.patch_frames)
    assert len(prepared.sets["train"]) == 2 * 15 * 2 and prepared.sets["train"].y.shape[1] == 4
    events = list(train.train(m, prepared, cfg(epochs=2, batch_size=16)))
    ep = [e for e in events if e.kind == "epoch"]
    assert "roc_auc_mean" in ep[-1].metrics["train"] and "roc_auc" in ep[-1].metrics["val"]
    test = train.evaluate(m, prepared.sets["test"])
    assert set(test["roc_auc"]) == set(ds.labels) and set(test["pr_auc"]) == set(ds.labels)
    assert all(0.0 <= v <= 1.0 for v in test["roc_auc"].values())


# ----------------------------------------------------------------------------- CLI
@pytest.fixture
def cli(monkeypatch, tmp_path):
    import musiclens.cli as cli_mod

    monkeypatch.setenv("MUSICLENS_CACHE", str(tmp_path / "cache"))
    return cli_mod.main


def genre_22k(root: Path, n: int = 5, seconds: float = 3.2) -> Path:
    for k, (lab, f) in enumerate((("bright", 3000.0), ("dark", 200.0))):
        for i in range(n):
            write_tone(root / lab / f"{lab}{i}.wav", f * (1 + 0.04 * i), seconds, sr=22050, seed=k * 10 + i)
    return root


def test_cli_train_evaluate_predict_json(cli, tmp_path, capsys):
    root = genre_22k(tmp_path / "g")
    (root / "dark" / "broken.wav").write_bytes(b"not audio")
    out = tmp_path / "model"
    assert (
        cli(
            [
                "train",
                "--arch",
                "vanilla-cnn",
                "--data",
                str(root),
                "--epochs",
                "2",
                "--out",
                str(out),
                "--json",
                "--batch-size",
                "4",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["arch"] == "vanilla-cnn" and res["classes"] == ["bright", "dark"]
    assert res["split"] == {"train": 6, "val": 2, "test": 2} and res["epochs_run"] == 2
    for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
        assert 0.0 <= res[key] <= 1.0
    assert res["chance"] == 0.5 and res["skipped"][0]["file"].endswith("broken.wav")
    assert (out / "weights.safetensors").is_file() and (out / "model.json").is_file()
    meta = json.loads((out / "model.json").read_text())
    assert set(meta["provenance"]["data"]["tracks"]["test"]) and meta["provenance"]["task"] == "genre"
    assert list((tmp_path / "cache").rglob("*.npy"))  # the feature cache went to $MUSICLENS_CACHE

    assert cli(["evaluate", "--model", str(out), "--data", str(root), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["split"] == "test" and ev["n_tracks"] == 2 and ev["accuracy"] == pytest.approx(res["test_accuracy"])
    assert cli(["evaluate", "--model", str(out), "--data", str(root), "--split", "all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_tracks"] == 10

    assert cli(["predict", str(root / "bright" / "bright0.wav"), "--model", str(out), "--json"]) == 0
    pr = json.loads(capsys.readouterr().out)
    assert len(pr["patches"]) == 1 and len(pr["patches"][0]) == 2
    assert sum(pr["file_probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert pr["prediction"] in ("bright", "dark")


def test_cli_bad_input_gives_one_line_and_exit_2(cli, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert (
        cli(
            [
                "train",
                "--arch",
                "vanilla-cnn",
                "--data",
                str(tmp_path / "empty"),
                "--epochs",
                "1",
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("musiclens: error: no audio files found") and "\n" not in err
    one = tmp_path / "one"
    write_tone(one / "rock" / "a.wav", 200.0, 1.0)
    assert cli(["train", "--arch", "gap-cnn", "--data", str(one), "--epochs", "1", "--out", str(tmp_path / "m")]) == 2
    assert "only one class ('rock')" in capsys.readouterr().err
    # a model folder whose weights don't match its JSON
    m = study.create("vanilla-cnn", ["a", "b"])
    registry.save(m, tmp_path / "bad")
    meta = json.loads((tmp_path / "bad" / "model.json").read_text())
    meta["architecture"]["params"]["dense"] = 32
    (tmp_path / "bad" / "model.json").write_text(json.dumps(meta))
    write_tone(tmp_path / "x.wav", 300.0, 4.0, sr=22050)
    assert cli(["predict", str(tmp_path / "x.wav"), "--model", str(tmp_path / "bad"), "--json"]) == 2
    err = capsys.readouterr().err
    assert "don't fit the model" in err and "dense1.weight" in err
    # a file shorter than one patch
    registry.save(m, tmp_path / "good")
    write_tone(tmp_path / "short.wav", 300.0, 1.0, sr=22050)
    assert cli(["predict", str(tmp_path / "short.wav"), "--model", str(tmp_path / "good")]) == 2
    assert "needs at least 3.00 s (one patch of 130 frames)" in capsys.readouterr().err


# ----------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_gtzan_excerpts_three_architectures_by_track(shared_data, tmp_path, capsys):
    root = shared_data / "audio" / "gtzan-excerpts-zenny126"
    if not root.is_dir():
        pytest.skip(f"real-data tier: {root} is absent")
    ds = data.scan_folder(root)
    assert len(ds.labels) == 10 and len(ds.tracks) == 50 and not ds.skipped
    split = data.split_by_track(ds, seed=0)
    ids = {s: set(split.ids()[s]) for s in data.SPLITS}
    assert split.counts() == {"train": 30, "val": 10, "test": 10}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    cache = data.FeatureCache(tmp_path / "cache")
    results = {}
    for arch in ("vanilla-cnn", "masked-cnn", "gap-cnn"):
        torch.manual_seed(0)
        m = study.create(arch, ds.labels)
        prepared = data.prepare_all(ds, split, m.front_end, m.patch_frames, cache=cache)
        for s in data.SPLITS:  # patches of a split only come from that split's tracks
            assert {prepared.sets[s].track_ids[k] for k in prepared.sets[s].track} == ids[s]
        ev = last(train.train(m, prepared, train.TrainConfig(epochs=3, batch_size=32, seed=0, patience=None)))
        test = train.evaluate(m, prepared.sets["test"])
        results[arch] = test["accuracy"]
        assert ev.history[-1]["train"]["loss"] < ev.history[0]["train"]["loss"]
        assert test["n_tracks"] == 10 and np.array(test["confusion"]).sum() == len(prepared.sets["test"])
    with capsys.disabled():
        print(
            "\nGTZAN excerpts, by-track split 30/10/10, 3 epochs, test accuracy (chance 0.10): "
            + ", ".join(f"{a} {v:.3f}" for a, v in results.items())
        )
    assert results["vanilla-cnn"] > 0.2  # measured 0.39 with seed 0; chance is 0.10


@pytest.mark.realdata
def test_choi_cnn_smoke_on_real_stems(shared_data, tmp_path):
    jtd = shared_data / "audio" / "mirdata-test-resources" / "jtd" / "processed"
    stems = {s: next(iter(jtd.glob(f"*_{s}.wav")), None) for s in ("bass", "drums", "piano")}
    if not jtd.is_dir() or None in stems.values():
        pytest.skip(f"real-data tier: the JTD stems are absent in {jtd}")
    track = tmp_path / "jtd" / "train" / "barron"
    track.mkdir(parents=True)
    for name, src in stems.items():
        os.symlink(src, track / f"{name}.wav")
    ds = data.load_dataset(tmp_path / "jtd", task="instruments")
    assert ds.labels == ["drums", "bass", "piano"]
    split = data.Split({"train": ds.tracks, "val": [], "test": []}, 0, (1.0, 0.0, 0.0))
    fe = study.ARCHS["choi-cnn"].front_end().replace(hop=256)  # 5 s excerpt: 2.4 s patches (207 frames)
    torch.manual_seed(0)
    m = study.create("choi-cnn", ds.labels, multilabel=True, front_end=fe, patch_seconds=2.4)
    prepared = data.prepare_all(ds, split, fe, m.patch_frames)
    ps = prepared.sets["train"]
    assert len(ps) == 7 * 2 and ps.y.shape == (14, 3)  # 2 segments × 7 stem combinations
    rows = [tuple(r) for r in ps.y.astype(int).tolist()]
    assert sorted(set(rows)) == sorted([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1)])
    assert all(rows.count(r) == 2 for r in set(rows))  # each combination in both segments
    ev = last(train.train(m, prepared, train.TrainConfig(epochs=3, batch_size=7, seed=0, patience=None)))
    assert ev.kind == "done" and len(ev.history) == 3
    metrics = train.evaluate(m, ps)
    assert all(0.0 <= v <= 1.0 for v in metrics["roc_auc"].values())


def test_cli_choi_cnn_for_instruments_and_for_mood(cli, tmp_path, capsys):
    freqs = {"drums": 150.0, "bass": 60.0, "vocals": 900.0, "other": 2500.0}
    for split, tracks in (("train", range(3)), ("test", range(3, 4))):
        for i in tracks:
            for k, (stem, f) in enumerate(freqs.items()):
                write_tone(
                    tmp_path / "musdb" / split / f"t{i}" / f"{stem}.wav",
                    f * (1 + 0.03 * i),
                    4.2,
                    sr=22050,
                    seed=k + 7 * i,
                )
    out = tmp_path / "inst"
    assert (
        cli(
            [
                "train",
                "--arch",
                "choi-cnn",
                "--task",
                "instruments",
                "--data",
                str(tmp_path / "musdb"),
                "--epochs",
                "1",
                "--patch-seconds",
                "4",
                "--out",
                str(out),
                "--json",
                "--quiet",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["classes"] == ["drums", "bass", "vocals", "other"] and res["multilabel"] is True
    assert res["split"] == {"train": 2, "val": 1, "test": 1} and res["patches"]["test"] == 15
    assert "test_roc_auc" in res and "test_pr_auc" in res and "test_accuracy" not in res
    assert 0.0 <= res["test_roc_auc"] <= 1.0
    assert json.loads((out / "model.json").read_text())["multilabel"] is True
    assert cli(["evaluate", "--model", str(out), "--data", str(tmp_path / "musdb"), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["split"] == "test" and set(ev["roc_auc"]) == set(freqs)
    # mood: the same network, single-label softmax over folder labels
    for k, q in enumerate(("Q1 happy", "Q2 angry", "Q3 sad")):
        for i in range(3):
            write_tone(tmp_path / "mood" / q / f"{i}.wav", 200.0 * (k + 1) * (1 + 0.05 * i), 4.2, sr=22050, seed=i)
    assert (
        cli(
            [
                "train",
                "--arch",
                "choi-cnn",
                "--task",
                "mood",
                "--data",
                str(tmp_path / "mood"),
                "--epochs",
                "1",
                "--patch-seconds",
                "4",
                "--out",
                str(tmp_path / "mood_model"),
                "--json",
                "--quiet",
            ]
        )
        == 0
    )
    mood = json.loads(capsys.readouterr().out)
    assert mood["multilabel"] is False and mood["chance"] == pytest.approx(1 / 3) and "test_accuracy" in mood
    assert registry.load(tmp_path / "mood_model").multilabel is False
