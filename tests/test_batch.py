"""``musiclens batch``: a folder of short synthetic wavs, a corrupt file and a MIDI file through
a tiny gap-cnn (a real registered family, so spawned workers load it too) and the bundled MIDI
LSTM; summary.parquet read back with pyarrow, resume, and ``--workers 2`` equal to one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import interpret_nets as nets
from midi_tunes import folk_tune
from musiclens.core import analyses, audio
from musiclens.core.analyses.batch import batch, parse_analyses, read_array, read_rows, read_table
from musiclens.core.models import registry, study

FILE_SR = 11025  # not the model's 8 kHz: files are resampled on reading
ANALYSES = "tags,activations:conv 2,attribution:gradient,attribution:grad-cam@conv 3,attribution:smoothgrad"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    m = study.create(
        "gap-cnn",
        ["low", "mid", "high"],
        front_end=nets.logmel_fe(),
        patch_seconds=0.5,
        filters=(4, 4, 4),
        maps=4,
        model_name="tiny-gap",
    )
    return registry.save(m, tmp_path_factory.mktemp("models") / "tiny-gap")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("collection")
    (d / "sub").mkdir()
    for i, freqs in enumerate(((200.0, 400.0), (900.0, 1300.0), (2500.0, 3300.0), (300.0, 2900.0))):
        where = d / "sub" if i % 2 else d
        audio.save(where / f"s{i}.wav", nets.signal(1.2, freqs=freqs, sr=FILE_SR, seed=i), FILE_SR)
    (d / "broken.wav").write_bytes(b"RIFF\x00\x00 not audio at all")
    folk_tune(d / "tune.mid")
    (d / "notes.txt").write_text("not a file a batch reads")
    return d


def _table(out: Path):
    return pq.read_table(out / "summary.parquet")


def test_batch_writes_one_row_per_file_and_the_arrays(run_cli, model_dir, folder, tmp_path):
    out = tmp_path / "out"
    status, text, err = run_cli("batch", folder, "--model", model_dir, "--analyses", ANALYSES, "--out", out, "--json")
    assert status == 0, err
    summary = json.loads(text)
    assert summary["files"] == 6 and summary["ok"] == 4 and summary["errors"] == 1 and summary["skipped"] == 1
    assert "batch: error broken.wav:" in err and "batch: skipped tune.mid:" in err  # logged, the run went on
    assert "6/6 files" in err

    table = _table(out)
    rows = table.to_pylist()
    assert [r["path"] for r in rows] == ["broken.wav", "s0.wav", "s2.wav", "sub/s1.wav", "sub/s3.wav", "tune.mid"]
    by = {r["path"]: r for r in rows}
    assert by["broken.wav"]["status"] == "error" and "not a readable audio file" in by["broken.wav"]["error"]
    assert by["broken.wav"]["predicted"] is None and by["broken.wav"]["shard"] is None
    assert by["tune.mid"]["status"] == "skipped" and by["tune.mid"]["kind"] == "midi"
    meta = json.loads(table.schema.metadata[b"musiclens"])
    assert meta["labels"] == ["low", "mid", "high"] and meta["folder"] == str(folder.resolve())
    assert meta["analyses"] == [s.name for s in parse_analyses(ANALYSES)]

    ok = by["s0.wav"]
    assert ok["status"] == "ok" and ok["error"] is None and ok["patches"] == 2
    assert ok["predicted"] == ok["top_tags"][0] and ok["confidence"] == ok["top_probabilities"][0]
    assert abs(sum(ok["probabilities"]) - 1) < 1e-5
    taggram = read_array(out, ok, "tags")
    assert taggram.shape == (2, 3) and taggram.dtype == np.float32
    np.testing.assert_allclose(taggram.mean(0), ok["probabilities"], rtol=1e-6)
    acts = read_array(out, ok, "activations:conv 2")
    assert list(acts.shape) == ok["activations:conv 2.shape"]
    assert ok["activations:conv 2.energy"] == pytest.approx(float((acts.astype(np.float64) ** 2).mean()))
    for name in ("attribution:gradient", "attribution:grad-cam@conv 3", "attribution:smoothgrad"):
        m = read_array(out, ok, name)
        assert m.shape == (16, 2 * 63)  # (mel bands, 2 patches of 63 frames)
        assert ok[f"{name}.target"] == ok["predicted"]
        assert ok[f"{name}.max"] == pytest.approx(float(m.max()))
        assert 0 < ok[f"{name}.entropy"] <= 1
    # the array is also a plain np.load away
    with np.load(out / ok["shard"]) as npz:
        np.testing.assert_array_equal(npz[ok["attribution:gradient.key"]], read_array(out, ok, "attribution:gradient"))
    # the window's reader
    shown = read_table(out)
    assert shown.columns[:3] == ["path", "kind", "status"] and len(shown.rows) == 6
    assert shown.file(1) == folder.resolve() / "s0.wav"


def _same_arrays(a: Path, b: Path) -> None:
    rows_a, rows_b = _table(a).to_pylist(), _table(b).to_pylist()
    for ra, rb in zip(rows_a, rows_b):
        for name in parse_analyses(ANALYSES):
            if ra["status"] == "ok":
                np.testing.assert_array_equal(read_array(a, ra, name.name), read_array(b, rb, name.name))


def test_two_workers_give_the_same_table_and_arrays_as_one(run_cli, model_dir, folder, tmp_path):
    argv = ["batch", folder, "--model", model_dir, "--analyses", ANALYSES, "--shard-files", "2", "--quiet"]
    status, _, err = run_cli(*argv, "--out", tmp_path / "one")
    assert status == 0, err
    status, _, err = run_cli(*argv, "--out", tmp_path / "two", "--workers", "2")
    assert status == 0, err
    assert err == ""
    one, two = _table(tmp_path / "one"), _table(tmp_path / "two")
    assert one.equals(two)  # every column, shard and keys included
    assert one.schema.metadata == two.schema.metadata
    _same_arrays(tmp_path / "one", tmp_path / "two")


def test_a_rerun_skips_finished_files_and_an_interrupted_run_resumes(model_dir, folder, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    analyses.run(batch(folder, model_dir, ANALYSES, full, device="cpu"))
    # stop after 3 files (shards of 2: one committed shard, one more committed on the way out)
    seen = []
    first = analyses.run(
        batch(folder, model_dir, ANALYSES, part, device="cpu", shard_files=2, cancel=lambda: len(seen) >= 3),
        lambda step: seen.append(step) if step.path else None,
    )
    assert first.cancelled and first.analysed == 3 and len(read_rows(part)) == 3
    (part / "shards" / "shard-00009.npz.part").write_bytes(b"half a shard")  # a crash's leftover
    with open(part / "rows.jsonl", "a") as f:
        f.write('{"path": "s2.w')  # a row cut short by a crash: that file runs again
    second = analyses.run(batch(folder, model_dir, ANALYSES, part, device="cpu", shard_files=2))
    assert second.previously_done == 3 and second.analysed == 3 and not second.cancelled
    assert not list((part / "shards").glob("*.part"))
    a, b = _table(full), _table(part)
    assert a.drop_columns(["shard"]).equals(b.drop_columns(["shard"]))  # shards differ: two runs
    _same_arrays(full, part)
    third = analyses.run(batch(folder, model_dir, ANALYSES, part, device="cpu"))
    assert third.analysed == 0 and third.previously_done == 6
    again = analyses.run(batch(folder, model_dir, ANALYSES, part, device="cpu", retry_errors=True))
    assert again.analysed == 1 and again.errors == 1  # broken.wav again, still broken
    assert _table(part).num_rows == 6


def test_a_midi_folder_with_the_bundled_midi_model(run_cli, folder, tmp_path):
    out = tmp_path / "midi"
    status, text, err = run_cli(
        "batch", folder, "--model", "midi_style_lstm", "--analyses", "tags,attribution:gradient", "--out", out
    )
    assert status == 0, err
    by = {r["path"]: r for r in _table(out).to_pylist()}
    tune = by["tune.mid"]
    assert tune["status"] == "ok" and tune["predicted"] == "folk" and tune["n_notes"] > 0
    sal = read_array(out, tune, "attribution:gradient")
    assert sal.shape == (tune["n_notes"], 3)
    assert read_array(out, tune, "tags").shape == (3,)
    assert {by[p]["status"] for p in by if p.endswith(".wav")} == {"skipped"}


@pytest.mark.parametrize(
    ("analyses_arg", "message"),
    [
        ("colours", "unknown analysis 'colours'"),
        ("attribution:grad-cam", "grad-cam needs a layer: attribution:grad-cam@LAYER"),
        ("activations:nope", "has no layer 'nope'"),
        ("attribution:no-such-method", "no-such-method"),
    ],
)
def test_bad_analyses_are_one_line_exit_2(run_cli, model_dir, folder, tmp_path, analyses_arg, message):
    status, _, err = run_cli("batch", folder, "--model", model_dir, "--analyses", analyses_arg, "--out", tmp_path / "x")
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_another_run_in_the_same_output_folder_is_refused(run_cli, model_dir, folder, tmp_path):
    out = tmp_path / "out"
    assert run_cli("batch", folder, "--model", model_dir, "--out", out, "--quiet")[0] == 0
    status, _, err = run_cli("batch", folder, "--model", model_dir, "--analyses", "attribution:gradient", "--out", out)
    assert status == 2 and "another analyses" in err


def test_a_folder_of_midi_files_only_gets_the_bundled_midi_model_by_default(run_cli, tmp_path):
    (tmp_path / "tunes").mkdir()
    folk_tune(tmp_path / "tunes" / "a.mid")
    (tmp_path / "tunes" / "b.mid").write_bytes(b"MThd broken")
    status, text, err = run_cli("batch", tmp_path / "tunes", "--out", tmp_path / "out", "--json", "--quiet")
    assert status == 0 and err == "", err
    assert json.loads(text)["ok"] == 1 and json.loads(text)["errors"] == 1
    rows = {r["path"]: r for r in _table(tmp_path / "out").to_pylist()}
    assert rows["a.mid"]["predicted"] == "folk" and rows["b.mid"]["status"] == "error"
    meta = json.loads(_table(tmp_path / "out").schema.metadata[b"musiclens"])
    assert meta["model"] == "midi_style_lstm"


def test_a_worker_that_dies_fails_only_its_file_and_a_rerun_resumes(run_cli, model_dir, folder, tmp_path, monkeypatch):
    """Two workers; the one given s2.wav segfaults (a real null-pointer read), later the one given
    sub/s3.wav is SIGKILLed (as the out-of-memory killer does): each file is logged with how its
    worker died, the others finish with the same rows as an undisturbed run, a rerun skips them."""
    from musiclens.core.analyses.batch import CRASH_ENV

    argv = ["batch", folder, "--model", model_dir, "--analyses", "tags,attribution:gradient", "--workers", "2"]
    status, _, err = run_cli(*argv, "--out", tmp_path / "clean", "--quiet")
    assert status == 0, err
    for crash, name, how in (("SIGSEGV", "s2.wav", "killed by SIGSEGV"), ("SIGKILL", "s3.wav", "killed by SIGKILL")):
        out = tmp_path / crash
        monkeypatch.setenv(CRASH_ENV, f"{name}={crash}")
        status, text, err = run_cli(*argv, "--out", out, "--json")
        assert status == 0, err
        summary = json.loads(text)
        assert summary["analysed"] == 6 and summary["errors"] == 2 and summary["ok"] == 3, summary
        rows = {r["path"]: r for r in _table(out).to_pylist()}
        dead = next(r for p, r in rows.items() if p.endswith(name))
        assert dead["status"] == "error" and how in dead["error"] and "worker" in dead["error"]
        assert f"{dead['path']}: the worker analysing it died ({how}" in err
        clean = {r["path"]: r for r in _table(tmp_path / "clean").to_pylist()}
        for p, r in rows.items():
            if p != dead["path"]:
                assert {k: v for k, v in r.items() if k != "shard"} == {
                    k: v for k, v in clean[p].items() if k != "shard"
                }
        monkeypatch.delenv(CRASH_ENV)
        again = json.loads(run_cli(*argv, "--out", out, "--json", "--quiet")[1])
        assert again["analysed"] == 0 and again["previously_done"] == 6
        retried = json.loads(run_cli(*argv, "--out", out, "--json", "--quiet", "--retry-errors")[1])
        assert retried["analysed"] == 2 and retried["ok"] == 4  # the crashed file now works; broken.wav does not


def test_a_one_worker_run_that_died_on_a_file_logs_it_on_the_rerun(model_dir, folder, tmp_path):
    """The one-worker run analyses in its own process: killed on a file, the rerun logs that file
    as failed (it would kill the run again) and finishes the others."""
    import os
    import subprocess
    import sys

    from musiclens.core.analyses.batch import CRASH_ENV

    out = tmp_path / "out"
    argv = [sys.executable, "-m", "musiclens", "batch", str(folder), "--model", str(model_dir), "--out", str(out)]
    argv += ["--shard-files", "1"]
    env = dict(os.environ, **{CRASH_ENV: "s2.wav=SIGKILL"})
    killed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert (out / "RUNNING").read_text() == "s2.wav" and len(read_rows(out)) == 2  # broken.wav, s0.wav
    rerun = subprocess.run(argv + ["--json"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "batch: error s2.wav: the previous run died while analysing it" in rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["analysed"] == 3 and summary["previously_done"] == 3 and summary["ok"] == 3
    assert not (out / "RUNNING").exists()


def test_midi_activations_and_attributions_on_a_few_midi_files(run_cli, tmp_path):
    """activations:LAYER on the bundled MIDI LSTM: per-note layers cut to the notes read (a piece
    longer than the 100-note window gives 100 rows), the output layer's logits whose softmax is
    the table's probabilities, and the head applied to the LSTM's last note giving those
    logits; two workers give the same table."""
    import torch

    from midi_tunes import write_piece

    tunes = tmp_path / "tunes"
    tunes.mkdir()
    folk_tune(tunes / "jig.mid")
    folk_tune(tunes / "long.mid", n=150)
    write_piece(tunes / "low.mid", low=True, n_notes=24, seed=1)
    write_piece(tunes / "high.mid", low=False, n_notes=30, seed=2)
    wanted = "tags,activations:lstm,activations:output,activations:normalise,attribution:integrated-gradients"
    argv = ["batch", tunes, "--model", "midi_style_lstm", "--analyses", wanted, "--quiet", "--json"]
    status, text, err = run_cli(*argv, "--out", tmp_path / "one")
    assert status == 0, err
    assert json.loads(text)["ok"] == 4
    status, _, err = run_cli(*argv, "--out", tmp_path / "two", "--workers", "2")
    assert status == 0, err
    assert _table(tmp_path / "one").equals(_table(tmp_path / "two"))

    model = registry.load("midi_style_lstm", device="cpu")
    out = tmp_path / "one"
    rows = {r["path"]: r for r in _table(out).to_pylist()}
    assert {p: r["n_notes"] for p, r in rows.items()} == {"high.mid": 30, "jig.mid": 60, "long.mid": 100, "low.mid": 24}
    for row in rows.values():
        k = row["n_notes"]
        lstm = read_array(out, row, "activations:lstm")
        assert lstm.shape == (k, 168) and row["activations:lstm.shape"] == [k, 168]
        assert row["activations:lstm.energy"] == pytest.approx(float((lstm.astype(np.float64) ** 2).mean()))
        assert read_array(out, row, "activations:normalise").shape == (k, 3)
        logits = read_array(out, row, "activations:output")
        assert logits.shape == (3,)
        np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), 0).numpy(), row["probabilities"], atol=1e-6)
        with torch.no_grad():
            from_last = model.net.head(torch.from_numpy(lstm[-1])).numpy()
        np.testing.assert_allclose(from_last, logits, atol=1e-5)
        sal = read_array(out, row, "attribution:integrated-gradients")
        assert sal.shape == (k, 3) and np.isfinite(sal).all() and np.abs(sal).max() > 0
    assert rows["jig.mid"]["predicted"] == "folk"
