"""Rules every ``musiclens`` command follows (issue 13, item 10): one output rule (missing
folders are created), one-line errors with exit 2, every default shown in ``--help``,
progress on stderr for the long commands (off with ``--quiet``), no mp3 decoder chatter
before our error, and a README CLI tour that covers every command."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from midi_tunes import folk_tune
from musiclens import cli
from musiclens.core import audio
from test_interpret_cli2 import bands_dir, tiny_dir, wavs  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run(run_cli):
    return run_cli


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# ------------------------------------------------------------------ one output rule

#: every command that writes -o, with arguments that make it run fast (tiny models)
_OUT = {
    "spectrogram": ("png", lambda d, t, b: ["spectrogram", d / "chord.wav", "--frontend", "logmel"]),
    "activations": ("npz", lambda d, t, b: ["activations", d / "chord.wav", "--model", t, "--layer", "conv 2"]),
    "cam": ("npz", lambda d, t, b: ["cam", d / "chord.wav", "--model", t, "--layer", "conv 2"]),
    "auralise": (
        "wav",
        lambda d, t, b: ["auralise", d / "chord.wav", "--model", t, "--layer", "conv 2", "--filter", "1"],
    ),
    "deconv": ("npz", lambda d, t, b: ["deconv", d / "chord.wav", "--model", t, "--layer", "conv 2", "--filter", "1"]),
    "saliency": ("npz", lambda d, t, b: ["saliency", d / "chord.wav", "--model", t]),
    "dream": ("wav", lambda d, t, b: ["dream", d / "chord.wav", "--model", t, "--target", "class1", "--steps", "2"]),
    "flip": ("wav", lambda d, t, b: ["flip", d / "chord.wav", "--model", b, "--to", "high", "--steps", "2"]),
    "midi-flip": ("mid", lambda d, t, b: ["midi-flip", folk_tune(d / "tune.mid"), "--to", "bach", "--steps", "1"]),
}


def test_the_output_rule_covers_every_command_that_takes_an_output():
    takes_o = {name for name, p in _subparsers().items() if any("-o" in a.option_strings for a in p._actions)}
    assert takes_o == set(_OUT)


@pytest.mark.parametrize("name", list(_OUT))
def test_every_command_creates_a_missing_output_folder(run, name, wavs, tiny_dir, bands_dir, tmp_path):
    ext, make = _OUT[name]
    out = tmp_path / "missing" / "deeper" / f"x.{ext}"
    status, _, err = run(*make(wavs, tiny_dir, bands_dir), "-o", out)
    assert status == 0, err
    assert out.is_file() and out.stat().st_size > 0
    assert "Traceback" not in err


@pytest.mark.parametrize("name", ["spectrogram", "auralise", "dream"])
def test_an_output_folder_that_cannot_be_made_is_one_line_exit_2(
    run,
    name,
    wavs,
    tiny_dir,
    bands_dir,
    tmp_path,
):
    (tmp_path / "afile").write_text("in the way")
    ext, make = _OUT[name]
    status, text, err = run(*make(wavs, tiny_dir, bands_dir), "-o", tmp_path / "afile" / f"x.{ext}")
    assert status == 2 and text == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("musiclens: error:") and "afile" in lines[0], err


def test_an_unexpected_error_is_one_line_exit_2(run, monkeypatch, wavs):
    from musiclens.cli import info

    def boom(args):
        raise RuntimeError("something inside\nbroke")

    monkeypatch.setattr(info, "run", boom)
    status, _, err = run("info", wavs / "chord.wav")
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("musiclens: error:") and "something inside broke" in err


def test_usage_errors_are_one_line_in_a_real_process(wavs, tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "musiclens",
            "spectrogram",
            str(wavs / "chord.wav"),
            "--frontend",
            "nope",
            "-o",
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope" in lines[0] and "--help" in lines[0], r.stderr


# ------------------------------------------------------------------ --help shows every default


def _shown(default) -> list[str]:
    if isinstance(default, (list, tuple)):
        return [",".join(str(v) for v in default), str(default)]
    return [str(default)]


def _option_help(help_text: str, option: str) -> str | None:
    """The lines ``--help`` shows for ``option`` (its own line and the indented ones after it)."""
    lines = help_text.splitlines()
    for i, line in enumerate(lines):
        if re.match(rf"^ {{1,4}}{re.escape(option)}([ ,=]|$)", line):
            block = [line]
            for nxt in lines[i + 1 :]:
                if not nxt.strip() or re.match(r"^ {0,4}\S", nxt):
                    break
                block.append(nxt)
            return " ".join(" ".join(block).split())
    return None


def test_help_shows_every_default():
    missing = []
    for name, p in _subparsers().items():
        help_text = p.format_help()
        for a in p._actions:
            if (
                not a.option_strings
                or a.default is None
                or a.default is False
                or a.default == argparse.SUPPRESS
                or a.help == argparse.SUPPRESS
            ):
                continue
            shown = _option_help(help_text, a.option_strings[0])
            assert shown is not None, (name, a.option_strings)
            if "default" not in shown or not any(s in shown for s in _shown(a.default)):
                missing.append(f"{name} {a.option_strings[-1]} (default {a.default!r}): {shown!r}")
    assert not missing, "\n".join(missing)


# ------------------------------------------------------------------ progress on stderr

_PROGRESS = {
    "dream": lambda d, t, b, tmp: [
        "dream",
        d / "chord.wav",
        "--model",
        t,
        "--target",
        "class1",
        "--steps",
        "3",
        "-o",
        tmp / "d.wav",
        "--json",
    ],
    "sanity": lambda d, t, b, tmp: ["sanity", d / "chord.wav", "--model", t, "--method", "grad,input", "--json"],
    "similarity": lambda d, t, b, tmp: [
        "similarity",
        d / "low",
        d / "high",
        "--model",
        t,
        "--no-baseline",
        "--json",
    ],
    "flip": lambda d, t, b, tmp: [
        "flip",
        d / "chord.wav",
        "--model",
        b,
        "--to",
        "high",
        "--steps",
        "3",
        "--keep-going",
        "-o",
        tmp / "f.wav",
        "--json",
    ],
}


@pytest.mark.parametrize("name", list(_PROGRESS))
def test_long_commands_show_progress_on_stderr_unless_quiet(
    run,
    name,
    wavs,
    tiny_dir,
    bands_dir,
    tmp_path,
):
    argv = _PROGRESS[name](wavs, tiny_dir, bands_dir, tmp_path)
    status, text, err = run(*argv)
    assert status == 0, err
    json.loads(text)  # stdout stays pure JSON
    lines = err.strip().splitlines()
    pattern = re.compile(rf"^{name}: .*\d+/\d+ .*\d+ s elapsed")
    assert lines and all(pattern.match(line) for line in lines), err
    assert re.search(r"(\d+)/\1 ", lines[-1]), lines[-1]  # ends at N/N
    status, text, err = run(*argv, "--quiet")
    assert status == 0 and err == ""
    json.loads(text)


def test_train_shows_preparation_and_batch_progress_unless_quiet(run, tmp_path, monkeypatch):
    from test_train import genre_22k

    monkeypatch.setenv("MUSICLENS_CACHE", str(tmp_path / "cache"))
    root = genre_22k(tmp_path / "g", n=3)
    argv = ["train", "--arch", "vanilla-cnn", "--data", root, "--epochs", "1", "--batch-size", "2", "--json"]
    status, text, err = run(*argv, "--out", tmp_path / "m")
    assert status == 0, err
    assert re.search(r"^train: 1/\d+ tracks prepared, .*\d+ s elapsed", err, re.M), err
    assert re.search(r"^train: (\d+)/\1 tracks prepared", err, re.M), err
    assert re.search(r"^train: \d+/\d+ batches of epoch 1/1, loss", err, re.M), err
    assert all(line.startswith("train: ") for line in err.splitlines()), err
    status, text, err = run(*argv, "--out", tmp_path / "m2", "--quiet")
    assert status == 0 and err == ""


def test_progress_is_throttled(capsys, monkeypatch):
    from musiclens.cli import _progress

    clock = iter([0.0, 0.1, 0.2, 0.3, 5.0, 5.1, 5.2, 9.0]).__next__
    monkeypatch.setattr(_progress.time, "monotonic", clock)
    p = _progress.Progress("job", "steps", total=100, every=2.0)
    for done in (1, 2, 3, 50, 51, 100):
        p.update(done)
    err = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in err] == ["job: 1/100 steps", "job: 50/100 steps", "job: 100/100 steps"]
    assert "ETA" in err[1] and "ETA" not in err[2]


# ------------------------------------------------------------------ mp3 decoder chatter


def _corrupt_mp3(path: Path) -> Path:
    """MPEG-1 layer III frames (valid headers) whose bodies are noise: mpg123 complains."""
    rng = np.random.default_rng(0)
    header = bytes([0xFF, 0xFB, 0x90, 0x64])  # 128 kbit/s, 44.1 kHz, 417-byte frames
    frames = [header + rng.integers(0, 256, 413, dtype=np.uint8).tobytes() for _ in range(60)]
    body = b"".join(frames)
    # garbage between frames: "Illegal Audio-MPEG-Header", "Trying to resync"
    body = body[:3000] + rng.integers(0, 256, 700, dtype=np.uint8).tobytes() + body[3000:]
    path.write_bytes(body)
    return path


@pytest.mark.parametrize("command", ["info", "spectrogram"])
def test_corrupt_mp3_gives_exactly_our_one_line(command, tmp_path, capfd):
    bad = _corrupt_mp3(tmp_path / "bad.mp3")
    argv = [command, str(bad)] + (["-o", str(tmp_path / "s.png")] if command == "spectrogram" else [])
    status = cli.main(argv)
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    if status == 0:  # libsndfile could make sense of it: then nothing at all on stderr
        assert lines == []
    else:
        assert status == 2 and len(lines) == 1 and lines[0].startswith("musiclens: error:"), err


def test_audio_load_of_a_corrupt_mp3_writes_nothing_to_fd_2(tmp_path, capfd):
    bad = _corrupt_mp3(tmp_path / "bad.mp3")
    with contextlib.suppress(Exception):  # raising or not is not the point: fd 2 is
        audio.load(bad)
    assert capfd.readouterr().err == ""


# ------------------------------------------------------------------ README CLI tour


def test_readme_cli_tour_covers_every_command():
    text = (REPO / "README.md").read_text()
    tour = text.split("## CLI tour", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in _subparsers() if not re.search(rf"musiclens {re.escape(name)}\b", tour)]
    assert not missing, f"the README's CLI tour lacks: {missing}"


# ------------------------------------------------------------------ midi-flip: one probability


def test_midi_flip_prints_the_probability_its_json_reports(run, tmp_path):
    tune = folk_tune(tmp_path / "tune.mid")
    status, text, err = run("midi-flip", tune, "--to", "bach", "-o", tmp_path / "out.mid", "--json")
    assert status == 0, err
    res = json.loads(text)
    last = err.strip().splitlines()[-1]
    printed = float(re.search(r"p\(bach\) = ?([0-9.]+)", last).group(1))
    assert printed == pytest.approx(res["probabilities_after"]["bach"], abs=5e-4), (last, res["probabilities_after"])
    assert res["probabilities_after"] == res["probabilities_after_reading_output"]
