"""The MusiCNN dissection commands: layers, tag, kernels, activations (JSON / .npz output)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from musiclens.core.models import registry

GOLDEN = Path(__file__).parent / "golden" / "musicnn"


@pytest.fixture
def run(run_cli):
    return run_cli


def test_layers_json(run):
    status, out, _ = run("layers", "--model", "MTT_musicnn", "--json")
    assert status == 0
    rows = {r["name"]: r for r in json.loads(out)["layers"]}
    assert rows["front end"]["shape"] == [561, 187]
    assert rows["mid end"]["shape"] == [753, 187]
    assert rows["front end / timbral 7x38"]["shape"] == [204, 187]
    assert rows["front end / temporal 32x1"]["shape"] == [51, 187]
    assert rows["back end / pool"]["shape"] == [1506]
    assert rows["back end / penultimate"]["shape"] == [200]
    assert rows["output"]["shape"] == [50]
    status, out, _ = run("layers", "--model", "MSD_vgg", "--json")
    rows = {r["name"]: r for r in json.loads(out)["layers"]}
    assert rows["conv 5 / pool"]["shape"] == [128, 1, 2]


def test_tag_json_matches_original_taggram(run):
    status, out, _ = run("tag", str(GOLDEN / "chord_noise.flac"), "--model", "MSD_musicnn", "--json")
    assert status == 0
    d = json.loads(out)
    expected = np.load(GOLDEN / "chord_noise.npz")["taggram_MSD_musicnn"]
    assert d["tags"] == registry.load("MSD_musicnn").labels
    assert np.abs(np.array(d["taggram"]) - expected).max() <= 1e-2
    assert len(d["top"]) == 50
    means = expected.mean(0)
    assert d["top"][0][0] == d["tags"][int(means.argmax())]
    assert d["top"][0][1] == pytest.approx(float(means.max()), abs=1e-2)


def test_tag_errors_are_one_line(run, tmp_path):
    short = tmp_path / "short.wav"
    import soundfile as sf

    sf.write(str(short), np.zeros(8000, dtype=np.float32), 16000)
    status, _, err = run("tag", str(short), "--model", "MTT_musicnn")
    assert status == 2 and err.count("\n") == 1 and "needs at least" in err
    status, _, err = run("tag", str(short), "--model", "no_such_model")
    assert status == 2 and "no model named" in err


def test_kernels_json(run):
    status, out, _ = run("kernels", "--model", "MTT_musicnn", "--json")
    assert status == 0
    d = json.loads(out)
    conv = {c["module"]: c for c in d["conv"]}
    last = conv["mid_end.layer3.conv"]
    assert last["kernel_shape"] == [64, 64, 7] and len(last["frobenius"]) == 64
    w = registry.load("MTT_musicnn").net.mid_end.layer3.conv.weight.detach().double()
    assert np.allclose(last["frobenius"], w.flatten(1).norm(dim=1).numpy())
    assert conv["front_end.timbral_38.conv"]["kernel_shape"] == [204, 1, 38, 7]
    # weight decay drove many first-layer kernels to zero: they are counted as dead
    assert conv["mid_end.layer1.conv"]["dead"] > 0
    norms = np.array(conv["mid_end.layer1.conv"]["frobenius"])
    assert conv["mid_end.layer1.conv"]["dead"] == int((norms <= 1e-3 * norms.max()).sum())
    bns = {b["module"]: b for b in d["batchnorm"]}
    assert set(bns["mid_end.layer3.bn"]) >= {"beta", "gamma", "moving_mean", "moving_variance"}
    assert len(bns["back_end.bn_pool"]["beta"]) == 1506
    assert d["totals"]["kernels"] == 2 * 204 + 3 * 51 + 3 * 64


def test_activations_npz_with_dense_matrix(run, tmp_path):
    out = tmp_path / "acts.npz"
    status, stdout, _ = run(
        "activations",
        str(GOLDEN / "chord_noise.flac"),
        "--model",
        "MTT_musicnn",
        "--layer",
        "mid end / conv 2",
        "-o",
        str(out),
        "--json",
    )
    assert status == 0 and json.loads(stdout)["W_shape"] == [2, 753, 187]
    z = np.load(out)
    assert z["activations"].shape == (2, 64, 187)
    assert z["W"].shape == (2, 753, 187) and z["energy"].shape == (2, 753)
    assert np.allclose(z["energy"], (z["W"] ** 2).mean(-1), rtol=1e-5)
    assert np.array_equal(z["W"][:, 625:689], z["activations"])  # mid 2 rows of W
    assert z["row_group_bounds"][-1].tolist() == [689, 753]
    # a front-end layer has no W
    status, _, _ = run(
        "activations",
        str(GOLDEN / "clicks_sweep.flac"),
        "--model",
        "MTT_vgg",
        "--layer",
        "conv 5 / pool",
        "-o",
        str(out),
    )
    z = np.load(out)
    assert status == 0 and z["activations"].shape == (1, 128, 1, 2) and "W" not in z.files


def test_activations_unknown_layer(run, tmp_path):
    status, _, err = run(
        "activations", str(GOLDEN / "clicks_sweep.flac"), "--layer", "nope", "-o", str(tmp_path / "a.npz")
    )
    assert status == 2 and "has no layer 'nope'" in err
