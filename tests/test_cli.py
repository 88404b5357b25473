"""The ``musiclens`` command as users run it: a real subprocess, exit codes, stdout, stderr."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from conftest import tone
from musiclens import __version__


def musiclens(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "musiclens", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def low_tone_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "low.wav"
    sf.write(path, np.stack([tone((100.0,), sr=22050, seconds=2.0)] * 2, axis=1), 22050)
    return path


def test_version():
    r = musiclens("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"musiclens {__version__}"


def test_info_json(low_tone_wav):
    r = musiclens("info", low_tone_wav, "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert {k: got[k] for k in ("duration_s", "sample_rate", "channels", "frames")} == {
        "duration_s": 2.0,
        "sample_rate": 22050,
        "channels": 2,
        "frames": 44100,
    }
    assert got["plausible"] is True and got["warning"] is None and not r.stderr


def test_info_flags_an_implausible_header(low_tone_wav, tmp_path):
    """A WAV whose header says 2 Hz (two seconds become 6 hours): info says so on stderr and in
    the JSON (the duration is the header's)."""
    import struct

    buf = bytearray(low_tone_wav.read_bytes())
    at = buf.index(b"fmt ") + 12  # chunk id, size, format tag, channels, then the rate
    buf[at : at + 4] = struct.pack("<I", 2)
    bad = tmp_path / "claims.wav"
    bad.write_bytes(bytes(buf))
    r = musiclens("info", bad, "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["plausible"] is False and "2 Hz" in got["warning"] and got["duration_s"] > 6 * 3600
    assert "info: warning: implausible header" in r.stderr


def test_spectrogram_png_has_low_frequencies_at_the_bottom(low_tone_wav, tmp_path):
    out = tmp_path / "s.png"
    r = musiclens("spectrogram", low_tone_wav, "--frontend", "logmel", "-o", out)
    assert r.returncode == 0, r.stderr
    img = np.asarray(Image.open(out))
    assert img.dtype == np.uint8 and img.shape == (128, 1 + 44100 // 512)
    assert img.min() == 0 and img.max() == 255
    rows = img.astype(float).mean(axis=1)
    assert np.argmax(rows) > 100  # a 100 Hz tone lights up one of the bottom rows


@pytest.mark.parametrize(
    "frontend,shape", [("logmel", (1, 128, 87)), ("stft", (2, 513, 173)), ("musicnn", (1, 96, 126))]
)
def test_spectrogram_npy(low_tone_wav, tmp_path, frontend, shape):
    out = tmp_path / f"{frontend}.npy"
    r = musiclens("spectrogram", low_tone_wav, "--frontend", frontend, "-o", out)
    assert r.returncode == 0, r.stderr
    arr = np.load(out)
    assert arr.shape == shape and arr.dtype == np.float32 and np.isfinite(arr).all()


@pytest.mark.parametrize(
    "args,message",
    [
        (("info", "/no/such/file.wav"), "not found"),
        (("spectrogram", "{bad}", "-o", "{tmp}/x.png"), "not a readable audio file"),
        (("spectrogram", "{empty}", "-o", "{tmp}/x.png"), "empty"),
        (("spectrogram", "{good}", "-o", "{tmp}/x.jpg"), ".png or .npy"),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path, low_tone_wav, args, message):
    (tmp_path / "bad.wav").write_text("not audio at all\n" * 10)
    (tmp_path / "empty.mp3").write_bytes(b"")
    subst = {"bad": tmp_path / "bad.wav", "empty": tmp_path / "empty.mp3", "tmp": tmp_path, "good": low_tone_wav}
    r = musiclens(*[a.format(**subst) for a in args])
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("musiclens: error:") and message in lines[0]
    assert "Traceback" not in r.stderr
