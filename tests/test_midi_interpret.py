"""MIDI saliency (gradient, Integrated Gradients), the classification flip, the bundled model, the CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from midi_tunes import folk_tune
from musiclens.core.errors import MusicLensError
from musiclens.core.interpret.midi_flip import flip, flip_steps
from musiclens.core.interpret.midi_saliency import (
    gradient_saliency,
    integrated_gradients,
    make_baseline,
    per_note,
)
from musiclens.core.midi import read_midi, write_midi
from musiclens.core.models.midi_lstm import (
    DEFAULT_MIDI_MODEL,
    NoteFeatureSpec,
    available_midi_models,
    build_midi_lstm,
    load_midi_model,
)
from musiclens.core.models.registry import LoadedModel


def random_model(seed=0, dtype=torch.float32, n_notes=12) -> LoadedModel:
    torch.manual_seed(seed)
    spec = NoteFeatureSpec(n_notes=n_notes, short="pad", mean=(60.0, 1.0, 1.0), std=(12.0, 1.0, 1.0))
    net, layers = build_midi_lstm(n_labels=3, hidden=16, layers=2, note_features=spec.to_dict())
    net.to(dtype).eval()
    return LoadedModel(
        "random",
        net,
        spec=spec,
        labels=["a", "b", "c"],
        layers={x.name: x for x in layers},
        architecture={"family": "midi_lstm", "params": {}},
    )


def random_notes(b=2, n=12, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    pitch = torch.randint(40, 90, (b, n, 1), generator=g).to(dtype)
    times = torch.rand(b, n, 2, generator=g, dtype=dtype) * 0.5 + 0.05
    return torch.cat([pitch, times], dim=-1)


# ------------------------------------------------------------------------ saliency
def test_gradient_saliency_shape_padding_and_finite_difference():
    model = random_model(dtype=torch.float64)
    x = random_notes(dtype=torch.float64)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 9:] = False
    sal = gradient_saliency(model, x, mask, target=1)
    assert sal.shape == (2, 12, 3)
    assert torch.all(sal[1, 9:] == 0) and torch.all(sal[1, :9].abs().sum(-1) > 0)
    # central difference on the step of note 3 and the duration of note 7 of item 0
    for note, feat in ((3, 1), (7, 2), (5, 0)):
        eps = 1e-5
        xp, xm = x.clone(), x.clone()
        xp[0, note, feat] += eps
        xm[0, note, feat] -= eps
        with torch.no_grad():
            fd = (model.net(xp, mask)[0, 1] - model.net(xm, mask)[0, 1]) / (2 * eps)
        assert sal[0, note, feat].item() == pytest.approx(fd.item(), rel=1e-5, abs=1e-9)
    gi = gradient_saliency(model, x, mask, target=1, times_input=True)
    torch.testing.assert_close(gi, sal * x)
    assert per_note(sal).shape == (2, 12) and torch.all(per_note(sal) >= 0)
    torch.testing.assert_close(per_note(sal, how="sum"), sal.sum(-1))


def test_integrated_gradients_completeness(record_property):
    model = random_model(seed=1)
    x = random_notes(seed=1)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[0, 10:] = False
    res = integrated_gradients(model, x, mask, target=2, steps=32)
    assert res.attributions.shape == (2, 12, 3)
    assert torch.all(res.attributions[0, 10:] == 0)
    gap = (res.output - res.baseline_output).abs()
    assert torch.all(gap > 1e-3)  # a non-trivial check: the output really moves along the path
    err = res.delta.max().item()
    rel = res.relative_delta.max().item()
    record_property("ig_completeness_abs_error", err)
    record_property("ig_completeness_rel_error", rel)
    print(
        f"IG completeness: max |sum(attr) - (f(x) - f(baseline))| = {err:.2e} (relative {rel:.2e}), "
        f"f(x) - f(baseline) = {gap.tolist()}"
    )
    assert rel < 1e-3
    # the same with a zeros baseline and the log-probability output
    res0 = integrated_gradients(model, x, mask, target=0, baseline="zeros", steps=32, output="log_probability")
    assert res0.relative_delta.max().item() < 1e-2
    base = make_baseline(model, x, mask)
    torch.testing.assert_close(base[0, 10:], x[0, 10:])  # padding kept as is
    torch.testing.assert_close(base[1, 0], torch.tensor([60.0, 0.05 * (np.e - 1), 0.05 * (np.e - 1)]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_saliency_on_gpu_matches_cpu():  # pragma: no cover - no GPU on the CI machines
    model = random_model()
    x = random_notes()
    cpu = gradient_saliency(model, x, target=0)
    ig_cpu = integrated_gradients(model, x, target=0, steps=8).attributions
    model.net.cuda()
    gpu = gradient_saliency(model, x.cuda(), target=0).cpu()
    ig_gpu = integrated_gradients(model, x.cuda(), target=0, steps=8).attributions.cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ig_gpu, ig_cpu, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------ bundled model + flip
@pytest.fixture(scope="module")
def bundled():
    return load_midi_model(DEFAULT_MIDI_MODEL)


def test_bundled_model_is_listed_and_classifies(bundled, tmp_path):
    assert DEFAULT_MIDI_MODEL in available_midi_models()
    assert bundled.labels == ["bach", "folk", "palestrina"]
    metrics = bundled.provenance["metrics"]
    assert metrics["test_accuracy"] >= 0.9 and sum(metrics["counts"]["test"].values()) >= 60
    out = bundled.classify_file(folk_tune(tmp_path / "tune.mid"))
    assert out["predicted"] == "folk", out
    assert out["notes_used"] == 60 and out["padded"] and out["repairs"] == []
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_saliency_and_ig_on_the_bundled_model(bundled, tmp_path, record_property):
    notes = bundled.spec.read(folk_tune(tmp_path / "tune.mid"))
    feats, mask = bundled.spec.window(notes)
    x, m = bundled.tensors(feats, mask)
    folk = bundled.label_index("folk")
    sal = gradient_saliency(bundled, x, m, target=folk)
    assert sal.shape == (1, 100, 3)
    assert torch.all(sal[0, 60:] == 0) and torch.count_nonzero(sal[0, :60]) > 100
    res = integrated_gradients(bundled, x, m, target=folk, steps=256)
    fixed = integrated_gradients(bundled, x, m, target=folk, steps=64, adaptive=False)
    gap = (res.output - res.baseline_output).item()
    err, rel = res.delta.item(), res.relative_delta.item()
    record_property("ig_bundled_abs_error", err)
    record_property("ig_bundled_rel_error", rel)
    record_property("ig_bundled_fixed64_rel_error", fixed.relative_delta.item())
    print(
        f"IG on the bundled model (folk logit, mean baseline): f(x) - f(b) = {gap:.4f}; adaptive "
        f"(<= 256 gradients) completeness error {err:.2e} (relative {rel:.2e}); fixed 64-node "
        f"Gauss-Legendre relative error {fixed.relative_delta.item():.2e}"
    )
    assert abs(gap) > 0.5 and rel < 2e-3
    assert fixed.relative_delta.item() > rel  # the sharp switch along the path needs the adaptive rule
    notes_sal = per_note(res.attributions)[0, :60]
    assert notes_sal.shape == (60,) and torch.all(notes_sal >= 0)


def test_flip_bundled_model_holds_after_rounding(bundled, tmp_path):
    notes = bundled.spec.read(folk_tune(tmp_path / "tune.mid"))
    result = flip(bundled, notes, to="bach", steps=300)
    d = result.to_dict()
    print(
        "flip:",
        {
            k: d[k]
            for k in ("predicted_before", "predicted_after", "probabilities_before", "probabilities_after", "change")
        },
    )
    assert d["predicted_before"] == "folk" and result.flipped, d
    # the after-notes are valid MIDI ...
    after = result.after
    assert np.all(after.pitch == np.round(after.pitch)) and after.pitch.min() >= 0 and after.pitch.max() <= 127
    assert np.all(after.step >= 0) and np.all(after.duration > 0)
    # ... and the flip survives writing the file and reading it back
    out = write_midi(result.full_notes(notes), tmp_path / "flipped.mid")
    reread = bundled.classify_file(out)
    assert reread["predicted"] == "bach", reread
    assert reread["probabilities"]["bach"] == pytest.approx(d["probabilities_after"]["bach"], abs=1e-4)
    # changed notes are reported with before/after values and the change is not everything
    assert 0 < d["change"]["notes_changed"] == len(d["changed_notes"]) <= len(after)
    for c in d["changed_notes"]:
        assert c["before"] != c["after"]


def test_flip_generator_can_be_stopped_and_respects_features(bundled, tmp_path):
    notes = bundled.spec.read(folk_tune(tmp_path / "tune.mid"))
    gen = flip_steps(bundled, notes, to="palestrina", steps=200, features=("pitch",))
    first = [next(gen) for _ in range(3)]
    gen.close()
    assert [s.step for s in first] == [1, 2, 3] and not first[-1].done
    best = first[-1].best
    assert best is not None
    # only pitches may change: steps and durations stay those of the original notes
    np.testing.assert_allclose(best.after.step, notes.first(len(best.after)).step, atol=1e-6)
    np.testing.assert_allclose(best.after.duration, notes.first(len(best.after)).duration, atol=1e-6)
    with pytest.raises(MusicLensError, match="unknown class"):
        next(flip_steps(bundled, notes, to="techno"))
    with pytest.raises(MusicLensError, match="features"):
        next(flip_steps(bundled, notes, to="bach", features=("loudness",)))


# ------------------------------------------------------------------------ CLI
def _parser(module):
    parser = argparse.ArgumentParser(prog="musiclens")
    module.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_midi_classify_json(tmp_path, capsys):
    from musiclens.cli import midi_classify

    path = folk_tune(tmp_path / "tune.mid")
    args = _parser(midi_classify).parse_args(["midi-classify", str(path), "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == DEFAULT_MIDI_MODEL and out["predicted"] == "folk"
    assert set(out["probabilities"]) == {"bach", "folk", "palestrina"}


def test_cli_midi_flip_json(tmp_path, capsys):
    from musiclens.cli import midi_flip

    path = folk_tune(tmp_path / "tune.mid", drums=True)
    out_path = tmp_path / "out.mid"
    args = _parser(midi_flip).parse_args(
        ["midi-flip", str(path), "--to", "bach", "-o", str(out_path), "--json", "--quiet"]
    )
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["flipped"] and out["flip_holds_in_output"]
    assert out["probabilities_before"]["folk"] > 0.5 and out["probabilities_after"]["bach"] > 0.33
    assert out["changed_notes"] and {"index", "before", "after", "delta"} <= set(out["changed_notes"][0])
    written = read_midi(out_path)
    n_drums = int(read_midi(path).is_drum.sum())
    assert n_drums == 40
    assert len(written) == 60 + n_drums and written.is_drum.sum() == n_drums  # drums kept for listening


def test_cli_errors_are_musiclens_errors(tmp_path):
    from musiclens.cli import midi_classify, midi_flip

    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"hello, not midi")
    args = _parser(midi_classify).parse_args(["midi-classify", str(bad)])
    with pytest.raises(MusicLensError, match="not a MIDI file"):
        args.func(args)
    args = _parser(midi_flip).parse_args(["midi-flip", str(bad), "--to", "bach", "-o", str(tmp_path / "o.wav")])
    with pytest.raises(MusicLensError, match=r"\.mid"):
        args.func(args)


# ------------------------------------------------------------------------ issue 13, item 9
def _note_rows(notes):
    from collections import Counter

    return Counter(
        zip(
            notes.pitch.tolist(),
            notes.start.tolist(),
            notes.end.tolist(),
            notes.velocity.tolist(),
            notes.program.tolist(),
        )
    )


def test_flip_changes_only_the_notes_it_reports_and_keeps_the_other_tracks(bundled, tmp_path):
    """A flip that changes a few notes leaves every other note at its exact time (note level)."""
    from collections import Counter

    from midi_multitrack import N_DRUMS, make_multitrack, track_events

    src = make_multitrack(tmp_path / "multi.mid")  # 3 tempi, drums, bends, CCs, 150 notes read
    notes = bundled.spec.read(src)
    before = bundled.classify_notes(notes)["predicted"]
    target = "bach" if before != "bach" else "palestrina"
    result = flip(bundled, notes, to=target, steps=300)
    d = result.to_dict()
    n_changed = d["change"]["notes_changed"]
    assert n_changed == len(d["changed_notes"]) > 0, d["change"]
    full = result.full_notes(notes)
    assert len(full) == len(notes)
    gone = _note_rows(notes) - _note_rows(full)
    new = _note_rows(full) - _note_rows(notes)
    print(
        f"flip to {target}: {n_changed} notes changed; notes with another start/end/pitch: {sum(gone.values())} "
        f"of {len(notes)}"
    )
    assert sum(gone.values()) == sum(new.values()) == n_changed  # the others keep their exact times
    window_rows = _note_rows(notes.first(bundled.spec.n_notes))
    assert not gone - window_rows  # only notes the model reads change
    assert {c["index"] for c in d["changed_notes"]} <= set(range(bundled.spec.n_notes))
    # written: drums and every other event kept; in ticks, exactly the reported notes differ
    out = write_midi(full, tmp_path / "flipped.mid")
    _, t0 = track_events(src)
    _, t1 = track_events(out)
    assert [(name, other) for name, other, _ in t1] == [(name, other) for name, other, _ in t0]
    n0 = Counter((name,) + n for name, _, ns in t0 for n in ns)
    n1 = Counter((name,) + n for name, _, ns in t1 for n in ns)
    assert sum((n0 - n1).values()) == n_changed and sum(1 for k in n1.elements() if k[0] == "Drums") == N_DRUMS
    # what the model reads from the written file is what the flip reported
    again = bundled.classify_file(out)
    assert again["probabilities"][target] == pytest.approx(d["probabilities_after"][target], abs=1e-4)


def test_cli_midi_classify_says_which_notes_the_model_reads(tmp_path, capsys):
    from midi_multitrack import N_BASS, N_DRUMS, N_PIANO, make_multitrack
    from musiclens.cli import midi_classify

    path = make_multitrack(tmp_path / "multi.mid")
    args = _parser(midi_classify).parse_args(["midi-classify", str(path), "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_notes_read"] == 100 and out["n_notes_total"] == N_PIANO + N_BASS
    assert out["n_notes_not_read_tracks"] == N_DRUMS  # drums: kept in the file, not read
    args = _parser(midi_classify).parse_args(["midi-classify", str(path)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert f"notes 1–100 of {N_PIANO + N_BASS}" in text and f"{N_DRUMS} drum" in text


@pytest.mark.realdata
def test_flip_real_jazz_file_with_drums_changes_only_reported_notes(bundled, shared_data, tmp_path):
    src = shared_data / "midi" / "di01096-genre-midi" / "jazz" / "jazz (10).mid"
    if not src.is_file():
        pytest.skip(f"real-data tier: {src} is not present")
    notes = bundled.spec.read(src)
    assert len(notes) == 2930
    before = bundled.classify_notes(notes)["predicted"]
    target = "bach" if before != "bach" else "folk"
    result = flip(bundled, notes, to=target, steps=150)
    d = result.to_dict()
    full = result.full_notes(notes)
    gone = _note_rows(notes) - _note_rows(full)
    print(
        f"real jazz (10).mid -> {target}: flipped {result.flipped}, {d['change']['notes_changed']} notes "
        f"changed, {sum(gone.values())} of {len(notes)} notes differ"
    )
    assert sum(gone.values()) == d["change"]["notes_changed"] == len(d["changed_notes"])
    out = write_midi(full, tmp_path / "jazz10_flipped.mid")
    assert read_midi(out).is_drum.sum() == 1019
