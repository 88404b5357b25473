"""The commands deconv, saliency, sanity, flip, the dream spellings and similarity over many
files. Most run on the tiny log-mel net of ``interpret_nets``, saved as a model folder (its
family is registered here, in-process); one test per command family uses the bundled
MusiCNN. Commands run in-process through ``musiclens.cli.main``; one also as a subprocess."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import interpret_nets as nets
from musiclens.cli.spectrogram import to_grey_image
from musiclens.core import audio
from musiclens.core.interpret import saliency
from musiclens.core.interpret import similarity as sim
from musiclens.core.interpret._common import to_fe_rate
from musiclens.core.interpret.deconv import auralise_deconv, deconv
from musiclens.core.interpret.dream import sine_sweep
from musiclens.core.models import registry
from musiclens.core.models.registry import LayerInfo, LoadedModel

REPO = Path(__file__).resolve().parents[1]
FILE_SR = 11025  # not the tiny model's 8 kHz: every command resamples in and out
FAMILY = "interpret-test-logmel"


@registry.register_family(FAMILY)
def _build_tiny(**_params):
    return nets.LogmelCNN(), list(nets.logmel_cnn().layers.values())


class BandNet(torch.nn.Module):
    """logit_c = 0.2 · mean dB of band group c (low 0-4, mid 5-10, high 11-15 of 16 mels):
    a decision known by design, so a flip to "high" must add high-frequency energy."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 3)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            for c, rows in enumerate((range(5), range(5, 11), range(11, 16))):
                self.fc.weight[c, list(rows)] = 0.2 / len(rows)

    def forward(self, x):
        return self.fc(x.mean(dim=-1)[:, 0])


@registry.register_family("interpret-test-bands")
def _build_bands(**_params):
    return BandNet(), [LayerInfo("output", "fc", "output", "output")]


@pytest.fixture(scope="module")
def bands_dir(tmp_path_factory) -> Path:
    m = LoadedModel(
        "bands",
        BandNet().eval(),
        nets.logmel_fe(),
        ["low", "mid", "high"],
        32,
        False,
        {"output": LayerInfo("output", "fc", "output", "output")},
        {"family": "interpret-test-bands"},
    )
    return registry.save(m, tmp_path_factory.mktemp("models") / "bands")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    m = nets.logmel_cnn()
    m = dataclasses.replace(m, architecture={"family": FAMILY})
    return registry.save(m, tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return registry.load(tiny_dir)


@pytest.fixture
def run(run_cli):
    return run_cli


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("audio")
    (d / "low").mkdir()
    (d / "high").mkdir()
    audio.save(d / "chord.wav", nets.signal(0.4, freqs=(300.0, 700.0), sr=FILE_SR), FILE_SR)
    audio.save(d / "low" / "a.wav", nets.signal(0.4, freqs=(200.0, 400.0), sr=FILE_SR, seed=1), FILE_SR)
    audio.save(d / "low" / "b.wav", nets.signal(0.4, freqs=(250.0, 500.0), sr=FILE_SR, seed=2), FILE_SR)
    audio.save(d / "high" / "a.wav", nets.signal(0.4, freqs=(2500.0, 3300.0), sr=FILE_SR, seed=3), FILE_SR)
    audio.save(d / "high" / "b.wav", nets.signal(0.4, freqs=(2800.0, 3600.0), sr=FILE_SR, seed=4), FILE_SR)
    return d


def _patch_features(m, path: Path) -> torch.Tensor:
    """What the commands analyse by default: one model patch of the file, at the model rate."""
    fe = m.front_end
    seconds = ((m.patch_frames - 1) * fe.hop + 1) / fe.sample_rate
    y, sr = audio.load(path, sr=None, duration=seconds)
    yy, _, _ = to_fe_rate(y, sr, fe)
    return fe(yy), y, sr


# ----------------------------------------------------------------------------- deconv


def test_deconv_npz_png_and_wav_match_the_engine(run, tiny, tiny_dir, wavs, tmp_path):
    layer, k = "conv 2", 1
    x, y, sr = _patch_features(tiny, wavs / "chord.wav")
    want = deconv(tiny, x, layer=layer, filter=k)[0].numpy()
    assert np.abs(want).max() > 0  # the filter is active on this input

    status, text, err = run(
        "deconv",
        wavs / "chord.wav",
        "--model",
        tiny_dir,
        "--layer",
        layer,
        "--filter",
        k,
        "-o",
        tmp_path / "d.npz",
        "--json",
    )
    assert status == 0, err
    res = json.loads(text)
    saved = np.load(tmp_path / "d.npz")
    np.testing.assert_allclose(saved["deconv"], want, rtol=1e-5, atol=1e-6)
    assert saved["mask"].shape == want.shape[1:] and saved["mask"].max() == pytest.approx(1.0)
    assert res["shape"] == list(want.shape) and res["max"] == pytest.approx(float(want.max()), rel=1e-5)

    status, _, err = run(
        "deconv", wavs / "chord.wav", "--model", tiny_dir, "--layer", layer, "--filter", k, "-o", tmp_path / "d.png"
    )
    assert status == 0, err
    png = np.asarray(Image.open(tmp_path / "d.png"))
    assert png.dtype == np.uint8 and png.shape == want.shape[1:]
    np.testing.assert_array_equal(png, to_grey_image(want))
    # low frequencies at the bottom: the image's last row is mel band 0
    band0 = (want[0, 0] - want.min()) / (want.max() - want.min()) * 255
    np.testing.assert_allclose(png[-1].astype(float), band0, atol=1.0)

    status, text, err = run(
        "deconv",
        wavs / "chord.wav",
        "--model",
        tiny_dir,
        "--layer",
        layer,
        "--filter",
        k,
        "-o",
        tmp_path / "d.wav",
        "--json",
    )
    assert status == 0, err
    heard, hsr = audio.load(tmp_path / "d.wav", sr=None)
    direct = auralise_deconv(tiny, y, layer=layer, filter=k, sample_rate=sr).audio[0]
    assert hsr == FILE_SR and len(heard) == len(y)
    np.testing.assert_allclose(heard, direct, atol=2e-4)  # 16-bit wav
    assert json.loads(text)["kept_db"] < 0


def test_deconv_errors_are_one_line_exit_2(run, tiny_dir, wavs, tmp_path):
    status, _, err = run(
        "deconv",
        wavs / "chord.wav",
        "--model",
        tiny_dir,
        "--layer",
        "conv 2",
        "--filter",
        "1",
        "-o",
        tmp_path / "d.jpg",
    )
    assert status == 2 and err.count("\n") == 1 and ".npz" in err
    status, _, err = run(
        "deconv",
        wavs / "chord.wav",
        "--model",
        tiny_dir,
        "--layer",
        "conv 9",
        "--filter",
        "1",
        "-o",
        tmp_path / "d.npz",
    )
    assert status == 2 and err.startswith("musiclens: error:") and "conv 9" in err


# ----------------------------------------------------------------------------- saliency


def test_saliency_grad_npz_equals_the_engine_and_png_is_the_magnitude(run, tiny, tiny_dir, wavs, tmp_path):
    x, _, _ = _patch_features(tiny, wavs / "chord.wav")
    want = saliency.gradient(tiny, x, target="class2")[0].numpy()
    status, text, err = run(
        "saliency",
        wavs / "chord.wav",
        "--model",
        tiny_dir,
        "--method",
        "grad",
        "--target",
        "class2",
        "-o",
        tmp_path / "g.npz",
        "--json",
    )
    assert status == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "g.npz")["attribution"], want, rtol=1e-5, atol=1e-7)
    assert json.loads(text)["target"] == "class2" and "integrated_gradients" not in json.loads(text)
    status, _, err = run(
        "saliency",
        wavs / "chord.wav",
        "--model",
        tiny_dir,
        "--method",
        "smoothgrad",
        "--samples",
        "4",
        "--target",
        "0",
        "-o",
        tmp_path / "s.png",
    )
    assert status == 0, err
    png = np.asarray(Image.open(tmp_path / "s.png"))
    sg = saliency.smoothgrad(tiny, x, target=0, n_samples=4)[0].numpy()
    np.testing.assert_array_equal(png, to_grey_image(np.abs(sg)))


def test_saliency_ig_reports_its_completeness_error(run, tiny, tiny_dir, wavs, tmp_path):
    status, text, err = run(
        "saliency",
        wavs / "chord.wav",
        "--model",
        tiny_dir,
        "--method",
        "ig",
        "--steps",
        "64",
        "--target",
        "class1",
        "-o",
        tmp_path / "ig.npz",
        "--json",
    )
    assert status == 0, err
    ig = json.loads(text)["integrated_gradients"]
    attr = np.load(tmp_path / "ig.npz")["attribution"].astype(np.float64)
    # the reported error is Σ attributions − (score at input − score at baseline)
    assert ig["completeness_error"] == pytest.approx(
        attr.sum() - (ig["score_at_input"] - ig["score_at_baseline"]), abs=1e-4
    )
    assert ig["score_at_input"] != ig["score_at_baseline"]
    assert ig["relative_error"] == pytest.approx(
        abs(ig["completeness_error"]) / abs(ig["score_at_input"] - ig["score_at_baseline"]), rel=1e-4
    )
    status, text, _ = run(
        "saliency", wavs / "chord.wav", "--model", tiny_dir, "--method", "ig", "--steps", "8", "--target", "class1"
    )
    assert status == 0 and "completeness" in text and "error" in text
    status, _, err = run("saliency", wavs / "chord.wav", "--model", tiny_dir, "--method", "ig", "--baseline", "noise")
    assert status == 2 and "baseline" in err


# ----------------------------------------------------------------------------- sanity


def test_sanity_flags_the_input_control_but_not_the_gradient(run, tiny_dir, wavs):
    status, text, err = run(
        "sanity",
        wavs / "chord.wav",
        "--model",
        tiny_dir,
        "--method",
        "grad,input,ig",
        "--target",
        "class0",
        "--steps",
        "8",
        "--json",
    )
    assert status == 0, err
    res = json.loads(text)["methods"]
    assert list(res) == ["grad", "input", "ig"]
    for name in res:  # step 0 (trained) + one step per layer with weights: fc, bn2, conv2, conv1
        assert [s["layer"] for s in res[name]["steps"]] == ["", "output", "bn 2", "conv 2", "conv 1"]
        assert res[name]["steps"][0]["spearman"] == pytest.approx(1.0)
    assert res["input"]["verdict"] == "does not reflect the model" and not res["input"]["reflects_model"]
    assert res["input"]["final_spearman"] == pytest.approx(1.0)
    for name in ("grad", "ig"):
        assert res[name]["verdict"] == "reflects the model", res[name]
        assert res[name]["final_spearman"] < 0.5 and res[name]["final_ssim"] < 0.5


def test_sanity_text_and_errors(run, tiny_dir, wavs):
    status, text, _ = run("sanity", wavs / "chord.wav", "--model", tiny_dir, "--method", "input", "--layers", "conv 2")
    assert status == 0 and "conv 2" in text and "-> does not reflect the model" in text
    status, _, err = run("sanity", wavs / "chord.wav", "--model", tiny_dir, "--method", "grad,lime")
    assert status == 2 and "lime" in err
    status, _, err = run("sanity", wavs / "chord.wav", "--model", tiny_dir, "--method", "grad-cam")
    assert status == 2 and "--layer" in err


# ----------------------------------------------------------------------------- flip


def test_flip_reports_before_after_and_the_change_it_wrote(run, bands_dir, wavs, tmp_path):
    m = registry.load(bands_dir)
    x, y, sr = _patch_features(m, wavs / "chord.wav")
    assert int(m.predict(x).argmax()) == 0  # a low chord is "low"
    out = tmp_path / "flip.wav"
    status, text, err = run(
        "flip",
        wavs / "chord.wav",
        "--model",
        bands_dir,
        "--to",
        "high",
        "--lr",
        "0.05",
        "--steps",
        "300",
        "-o",
        out,
        "--json",
        "--patch-only",
    )
    assert status == 0, err
    res = json.loads(text)
    assert res["before"]["prediction"] == "low" and res["flipped"] and res["after"]["prediction"] == "high"
    assert res["after"]["target_probability"] > res["before"]["target_probability"]
    assert res["before"]["top"][0]["label"] == "low" and len(res["before"]["top"]) == 3
    assert 0 < res["steps"] < 300
    # the reported change is the one between the input and the written file
    written, wsr = audio.load(out, sr=None)
    assert wsr == FILE_SR and len(written) == len(y)
    change = written.astype(np.float64) - y
    snr = 10 * np.log10(np.sum(y.astype(np.float64) ** 2) / np.sum(change**2))
    assert res["perturbation"]["snr_db"] == pytest.approx(snr, abs=0.3) and snr > 0
    assert res["perturbation"]["rms"] == pytest.approx(np.sqrt(np.mean(change**2)), rel=0.05)
    # what the model says to the written file is the reported "after"; it got brighter
    heard = m.predict(to_fe_rate_features(m, written, wsr))[0].numpy()
    assert int(heard.argmax()) == 2
    assert res["after"]["target_probability"] == pytest.approx(float(heard[2]), abs=0.02)
    assert nets.band_energy(written, wsr, 2500, 4000) > 10 * nets.band_energy(y, sr, 2500, 4000)
    status, text, _ = run(
        "flip",
        wavs / "chord.wav",
        "--model",
        bands_dir,
        "--to",
        "high",
        "--lr",
        "0.05",
        "--steps",
        "300",
        "-o",
        tmp_path / "f2.wav",
        "--patch-only",
    )
    assert status == 0 and "before: 'low'" in text and "after:  'high'" in text and "SNR" in text


@pytest.fixture(scope="module")
def long_stereo(tmp_path_factory) -> Path:
    """1 s of a low chord, stereo (the right channel quieter): longer than one tiny-model patch."""
    y = nets.signal(1.0, freqs=(300.0, 700.0), sr=FILE_SR, seed=5)
    path = tmp_path_factory.mktemp("long") / "long.wav"
    audio.save(path, np.stack([y, 0.5 * y]), FILE_SR)
    return path


def test_flip_writes_the_whole_recording_with_the_changed_span(run, bands_dir, long_stereo, tmp_path):
    m = registry.load(bands_dir)
    fe = m.front_end
    patch = ((m.patch_frames - 1) * fe.hop + 1) / fe.sample_rate
    original, sr = audio.load(long_stereo, sr=None, mono=False)
    out = tmp_path / "whole.wav"
    status, text, err = run(
        "flip",
        long_stereo,
        "--model",
        bands_dir,
        "--to",
        "high",
        "--offset",
        "0.3",
        "--lr",
        "0.05",
        "--steps",
        "300",
        "-o",
        out,
        "--json",
        "--quiet",
    )
    assert status == 0, err
    res = json.loads(text)
    written, wsr = audio.load(out, sr=None, mono=False)
    assert wsr == sr and written.shape == original.shape  # the whole recording, every channel
    start, end = int(round(0.3 * sr)), int(round(0.3 * sr)) + int(round(patch * sr))
    assert res["span"]["start_s"] == pytest.approx(0.3, abs=1e-3)
    assert res["span"]["end_s"] == pytest.approx(end / sr, abs=2e-3) and not res["patch_only"]
    # changed inside the span; untouched more than the 10 ms crossfade away from it
    fade = int(round(0.01 * sr))
    np.testing.assert_allclose(written[:, : start - fade], original[:, : start - fade], atol=1e-6)
    np.testing.assert_allclose(written[:, end + fade :], original[:, end + fade :], atol=1e-6)
    assert np.abs(written[:, start:end] - original[:, start:end]).max() > 1e-3
    # no click: the change continues across the span's edges and fades to nothing outside it
    change = written[0] - original[0]
    big = np.abs(change).max()
    assert abs(change[start - 1] - change[start]) < 0.02 * big and abs(change[end] - change[end - 1]) < 0.02 * big
    assert abs(change[start - fade]) < 0.01 * big and abs(change[end + fade - 1]) < 0.01 * big
    # the flip holds on the span of the written file, and that is the reported "after"
    span, _ = audio.load(out, sr=None, offset=0.3, duration=patch)
    heard = m.predict(to_fe_rate_features(m, span, sr))[0].numpy()
    assert res["flipped"] and int(heard.argmax()) == 2
    assert res["after"]["target_probability"] == pytest.approx(float(heard[2]), abs=0.02)


def test_flip_when_the_model_already_says_the_target(run, bands_dir, wavs, tmp_path):
    out = tmp_path / "same.wav"
    status, text, err = run("flip", wavs / "chord.wav", "--model", bands_dir, "--to", "low", "-o", out, "--quiet")
    assert status == 0, err
    assert "already 'low'" in text and "flipped" not in text and "0 steps" not in text
    status, text, err = run(
        "flip", wavs / "chord.wav", "--model", bands_dir, "--to", "low", "-o", out, "--json", "--quiet"
    )
    res = json.loads(text)
    assert res["already"] and res["steps"] == 0 and res["flipped"]
    np.testing.assert_allclose(
        audio.load(out, sr=None)[0], audio.load(wavs / "chord.wav", sr=None)[0], atol=1e-6
    )  # written unchanged


def to_fe_rate_features(m, y, sr):
    yy, _, _ = to_fe_rate(y, sr, m.front_end)
    return m.front_end(yy)


def test_flip_errors(run, tiny_dir, wavs, tmp_path):
    status, _, err = run("flip", wavs / "chord.wav", "--model", tiny_dir, "--to", "class7", "-o", tmp_path / "f.wav")
    assert status == 2 and "class7" in err


# ----------------------------------------------------------------------------- dream


def test_dream_issue_spellings_equal_the_existing_ones(run, tiny, tiny_dir, wavs, tmp_path):
    fe = tiny.front_end
    patch = ((tiny.patch_frames - 1) * fe.hop + 1) / fe.sample_rate
    common = ("--model", tiny_dir, "--target", "class1", "--steps", "3", "--json")
    status, text_a, err = run(
        "dream",
        "--init",
        "sweep",
        "--minus-all",
        "--update",
        "subtract",
        "--normalize-grad",
        *common,
        "-o",
        tmp_path / "a.wav",
    )
    assert status == 0, err
    status, text_b, err = run(
        "dream",
        "--sweep",
        str(patch),
        "--minus",
        "others",
        "--update",
        "subtractive",
        *common,
        "-o",
        tmp_path / "b.wav",
    )
    assert status == 0, err
    a, b = json.loads(text_a), json.loads(text_b)
    assert a["minus"] == "others" and a["objective_end"] == pytest.approx(b["objective_end"], rel=1e-6)
    ya, yb = audio.load(tmp_path / "a.wav", sr=None)[0], audio.load(tmp_path / "b.wav", sr=None)[0]
    assert len(ya) == len(sine_sweep(fe, seconds=patch))
    np.testing.assert_array_equal(ya, yb)
    # --init FILE is the positional FILE; --update add is additive
    status, text_c, _ = run("dream", "--init", wavs / "chord.wav", "--update", "add", *common, "-o", tmp_path / "c.wav")
    status_d, text_d, _ = run("dream", wavs / "chord.wav", *common, "-o", tmp_path / "d.wav")
    assert status == status_d == 0
    assert json.loads(text_c)["objective_end"] == pytest.approx(json.loads(text_d)["objective_end"], rel=1e-6)
    assert json.loads(text_c)["objective_end"] > json.loads(text_c)["objective_start"]


def test_dream_is_normalised_to_a_099_peak_unless_keep_level(run, tiny_dir, tmp_path):
    loud = tmp_path / "loud.wav"
    audio.save(loud, 3.0 * nets.signal(0.4, freqs=(300.0, 700.0), sr=FILE_SR), FILE_SR)  # float WAV, peak ~2
    common = ("--model", tiny_dir, "--target", "class1", "--steps", "2", "--json", "--quiet")
    status, text, err = run("dream", loud, *common, "-o", tmp_path / "n.wav")
    assert status == 0, err
    res = json.loads(text)
    y, _ = audio.load(tmp_path / "n.wav", sr=None)
    assert np.abs(y).max() == pytest.approx(0.99, abs=1e-4)
    assert res["peak"] > 1.0 and res["gain"] == pytest.approx(0.99 / res["peak"], rel=1e-4)
    assert res["gain_db"] == pytest.approx(20 * np.log10(res["gain"]), abs=1e-3) and not res["keep_level"]
    status, text, err = run("dream", loud, *common, "--keep-level", "-o", tmp_path / "raw.wav")
    assert status == 0, err
    raw = json.loads(text)
    y_raw, _ = audio.load(tmp_path / "raw.wav", sr=None)
    assert raw["gain"] == 1.0 and raw["keep_level"] and np.abs(y_raw).max() == pytest.approx(raw["peak"], rel=1e-4)
    np.testing.assert_allclose(y, y_raw * res["gain"], atol=1e-4)  # 16-bit WAV vs float WAV


def test_dream_conflicting_spellings_are_refused(run, tiny_dir, wavs, tmp_path):
    out = tmp_path / "x.wav"
    status, _, err = run(
        "dream", wavs / "chord.wav", "--init", "sweep", "--model", tiny_dir, "--target", "0", "-o", out
    )
    assert status == 2 and "only one start" in err
    status, _, err = run(
        "dream", "--init", "sweep", "--model", tiny_dir, "--target", "0", "--minus", "class1", "--minus-all", "-o", out
    )
    assert status == 2 and "--minus-all" in err
    with pytest.raises(SystemExit) as exc:
        run(
            "dream",
            "--init",
            "sweep",
            "--model",
            tiny_dir,
            "--target",
            "0",
            "--raw-gradient",
            "--normalize-grad",
            "-o",
            out,
        )
    assert exc.value.code == 2


# ----------------------------------------------------------------------------- similarity


def test_similarity_within_class_pairs_give_a_curve_per_class(run, tiny, tiny_dir, wavs):
    files = [wavs / "low" / "a.wav", wavs / "low" / "b.wav", wavs / "high" / "a.wav", wavs / "high" / "b.wav"]
    status, text, err = run(
        "similarity",
        "--model",
        tiny_dir,
        *files,
        "--pairs",
        "within-class",
        "--labels-from-folders",
        "--json",
    )
    assert status == 0, err
    res = json.loads(text)
    assert res["n_pairs"] == 2 and res["labels"] == ["low", "low", "high", "high"]
    assert set(res["classes"]) == {"low", "high"}
    metrics = ("pearson", "cosine", "nmse", "mse_max", "cka", "cka_debiased")
    for label in ("low", "high"):
        xa = _patch_features(tiny, wavs / label / "a.wav")[0]
        xb = _patch_features(tiny, wavs / label / "b.wav")[0]
        one = sim.layer_similarity(tiny, xa, xb, metrics=metrics)
        cls = res["classes"][label]
        assert cls["n_pairs"] == 1 and cls["n_files"] == 2
        for k in one.values:
            want = [None if not np.isfinite(v) else pytest.approx(v, rel=1e-9, abs=1e-12) for v in one.values[k][0]]
            assert cls[k] == want, k
    for k in metrics:  # the overall curve is the mean over the two within-class pairs
        for j, v in enumerate(res[k]):
            parts = [res["classes"][c][k][j] for c in ("low", "high")]
            if v is None:
                assert parts == [None, None]
            else:
                assert v == pytest.approx(np.mean(parts), rel=1e-9)
    conv = res["layers"].index("conv 2")
    assert 0 < res["mse_max"][conv] < 4 and res["cka"][conv] > res["cka_baseline"][conv]
    assert res["cka_debiased"][conv] > res["cka_debiased_baseline"][conv]


def test_similarity_all_pairs_folders_and_errors(run, tiny_dir, wavs):
    status, text, err = run(
        "similarity",
        "--model",
        tiny_dir,
        wavs / "low",
        wavs / "high",
        "--metrics",
        "pearson,mse_max",
        "--no-baseline",
        "--json",
    )
    assert status == 0, err
    res = json.loads(text)
    assert len(res["files"]) == 4 and res["n_pairs"] == 6 and "classes" not in res
    assert set(res) >= {"pearson", "mse_max"} and "cka" not in res
    status, text, _ = run(
        "similarity",
        "--model",
        tiny_dir,
        wavs / "low" / "a.wav",
        wavs / "high" / "a.wav",
        "--no-baseline",
        "--json",
    )
    two = json.loads(text)
    assert status == 0 and two["a"].endswith("a.wav") and two["n_pairs"] == 1
    status, text, _ = run(
        "similarity",
        "--model",
        tiny_dir,
        wavs / "low",
        wavs / "high",
        "--pairs",
        "within-class",
        "--labels-from-folders",
        "--no-baseline",
    )
    assert status == 0 and "class 'low'" in text and "mean over 2 within-class pairs" in text
    status, _, err = run("similarity", "--model", tiny_dir, wavs / "low", "--pairs", "within-class")
    assert status == 2 and "--labels-from-folders" in err
    status, _, err = run("similarity", "--model", tiny_dir, wavs / "chord.wav")
    assert status == 2 and "at least two" in err
    status, _, err = run(
        "similarity",
        "--model",
        tiny_dir,
        wavs / "low" / "a.wav",
        wavs / "high" / "a.wav",
        "--pairs",
        "within-class",
        "--labels-from-folders",
    )
    assert status == 2 and "no class has two files" in err


# ----------------------------------------------------------------------------- MusiCNN


def test_musicnn_deconv_png_and_saliency_on_the_demo(run, tmp_path):
    demo = REPO / "resources" / "demo" / "demo.ogg"
    status, text, err = run(
        "deconv",
        demo,
        "--model",
        "MTT_musicnn",
        "--layer",
        "front end / timbral 7x38 / conv",
        "--filter",
        "1",
        "-o",
        tmp_path / "d.png",
        "--json",
    )
    assert status == 0, err
    png = np.asarray(Image.open(tmp_path / "d.png"))
    assert png.shape == (96, 187) and png.max() == 255 and png.min() == 0
    status, text, err = run(
        "saliency", demo, "--model", "MTT_musicnn", "--method", "grad", "--target", "techno", "--json"
    )
    assert status == 0, err
    res = json.loads(text)
    assert res["shape"] == [1, 96, 187] and res["max"] > 0 > res["min"]


def test_subprocess_once_wired(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "musiclens",
            "deconv",
            str(REPO / "resources/demo/demo.ogg"),
            "--layer",
            "front end / timbral 7x38 / conv",
            "--filter",
            "1",
            "-o",
            str(tmp_path / "d.txt"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("musiclens: error:") and proc.stderr.count("\n") == 1


def test_flip_command_and_the_analyses_layer_give_the_same_flip(run, bands_dir, long_stereo, tmp_path):
    """``musiclens flip`` is a front end of ``core.analyses.flip_recording``: same input, same
    steps, same probabilities; the use case yields the one Progress type."""
    from musiclens.core import analyses
    from musiclens.core.progress import Progress

    out = tmp_path / "cli.wav"
    status, text, err = run(
        "flip",
        long_stereo,
        "--model",
        bands_dir,
        "--to",
        "high",
        "--offset",
        "0.3",
        "--lr",
        "0.05",
        "--steps",
        "300",
        "-o",
        out,
        "--json",
        "--quiet",
    )
    assert status == 0, err
    res = json.loads(text)
    m = registry.load(bands_dir)
    fe = m.front_end
    patch = ((m.patch_frames - 1) * fe.hop + 1) / fe.sample_rate
    y, sr = audio.load(long_stereo, sr=None, offset=0.3, duration=patch)
    steps: list = []
    result = analyses.run(
        analyses.flip_recording(m, long_stereo, y, sr, start=int(round(0.3 * sr)), target=2, steps=300, lr=0.05),
        steps.append,
    )
    assert steps and all(isinstance(s, Progress) for s in steps)
    assert result.flipped == res["flipped"] and result.steps == res["steps"]
    assert float(result.after[2]) == pytest.approx(res["after"]["target_probability"], abs=1e-4)
    written, _ = audio.load(out, sr=None, mono=False)
    np.testing.assert_allclose(written, result.audio, atol=1e-4)  # the file is the result (16-bit PCM: 3e-5)
