"""Help menu: the About box (versions, device, licences and provenance) and the first-run
guide (shown once, remembered in QSettings, never in --screenshot mode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMainWindow

from musiclens.app import about
from musiclens.core.resources import available, resources_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    path = tmp_path / "settings.ini"
    monkeypatch.setenv("MUSICLENS_SETTINGS", str(path))
    monkeypatch.delenv(about.NO_GUIDE_ENV, raising=False)
    return path


@pytest.fixture
def plain_window(qtbot, settings_file):
    """A bare main window: the guide and About box need no session to be shown."""
    win = QMainWindow()
    win.resize(900, 600)
    qtbot.addWidget(win)
    win.show()
    return win


def help_action(window, text: str):
    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    return next(a for a in help_menu.actions() if a.text() == text)


# ---------------------------------------------------------------------- About
def test_about_names_every_bundled_model_with_its_licence_and_the_demo(qtbot, settings_file):
    dialog = about.AboutDialog()
    qtbot.addWidget(dialog)
    text = dialog.text.toPlainText()
    models = available()
    assert "MSD_musicnn" in models and "MTT_vgg" in models
    for name in models:
        assert name in text
        meta = json.loads((resources_dir() / "models" / name / "model.json").read_text())
        prov = meta["provenance"]
        licence = prov.get("licence") or prov["licence_note"]
        assert " ".join(licence.split()) in text, name
    assert "Licence: ISC" in text
    # the licence file's own words, not just its name
    licence_text = (resources_dir() / "models" / "LICENSE-musicnn.txt").read_text()
    assert "Permission to use, copy, modify, and/or distribute this software" in licence_text
    assert "Permission to use, copy, modify, and/or distribute this software" in text
    assert "Music Technology Group, Universitat Pompeu Fabra" in text
    assert "musicnn==0.1.0" in text  # where the weights came from
    # the demo's provenance and licence from resources/demo/README.md
    assert "packaging/make_demo_audio.py" in text and "CC0 1.0" in text


def test_about_shows_the_versions_of_the_libraries_that_do_the_work(qtbot, settings_file):
    import PySide6

    dialog = about.AboutDialog()
    qtbot.addWidget(dialog)
    text = dialog.text.toPlainText()
    from musiclens import __version__

    assert f"MusicLens {__version__}" in text
    for dist in ("torch", "librosa", "numpy"):
        assert metadata.version(dist) in text, dist
    assert PySide6.__version__ in text
    assert about.versions()["PyTorch"] == metadata.version("torch")


def test_about_reads_the_provenance_of_whatever_resources_the_app_uses(qtbot, tmp_path, monkeypatch, settings_file):
    """A bundle or a user's copy of resources/: the About box shows its own files."""
    res = tmp_path / "resources"
    (res / "models" / "tiny_net").mkdir(parents=True)
    (res / "models" / "orphan").mkdir()
    (res / "demo").mkdir()
    (res / "models" / "tiny_net" / "model.json").write_text(
        json.dumps(
            {
                "provenance": {
                    "description": "a tiny test net",
                    "licence": "Apache-2.0",
                    "licence_file": "resources/models/LICENSE-tiny.txt",
                }
            }
        )
    )
    (res / "models" / "LICENSE-tiny.txt").write_text("Tiny licence: be nice to tiny nets.")
    (res / "models" / "orphan" / "model.json").write_text(
        json.dumps({"provenance": {"licence": "MIT", "licence_file": "resources/models/LICENSE-gone.txt"}})
    )
    (res / "demo" / "README.md").write_text("# Demo input\n\nA made-up demo, licence WTFPL.\n")
    monkeypatch.setenv("MUSICLENS_RESOURCES", str(res))
    dialog = about.AboutDialog()
    qtbot.addWidget(dialog)
    text = dialog.text.toPlainText()
    assert "tiny_net" in text and "a tiny test net" in text and "Apache-2.0" in text
    assert "Tiny licence: be nice to tiny nets." in text
    assert "licence file resources/models/LICENSE-gone.txt is missing" in text
    assert "A made-up demo, licence WTFPL." in text
    assert "MSD_musicnn" not in text  # the repo's models are not this installation's


def test_about_text_is_markdown_that_shows_file_names_literally():
    assert about.md_escape("corpus/bach/bwv*.mxl and MSD_musicnn") == r"corpus/bach/bwv\*.mxl and MSD\_musicnn"


def test_about_asks_the_worker_which_device_runs(qtbot, settings_file):
    import torch

    from musiclens.app.window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    try:
        dialog = win.about()
        assert isinstance(dialog, about.AboutDialog) and dialog.isVisible()
        qtbot.waitUntil(lambda: dialog.device is not None, timeout=60_000)
        assert dialog.device.startswith("GPU" if torch.cuda.is_available() else "CPU")
        if not torch.cuda.is_available():
            assert "no CUDA GPU available" in dialog.device
        assert f"Device in use: {dialog.device}" in dialog.text.toPlainText()
        # the Help menu entry opens the same box
        help_action(win, "&About MusicLens").trigger()
        assert win._about_dialog is dialog
    finally:
        win.close()


def test_device_line_says_which_device_and_whether_a_gpu_sits_unused():
    assert (
        about.describe_device({"model_device": "cuda:0", "gpu": "RTX 9000", "cuda_available": True, "threads": 1})
        == "GPU (RTX 9000)"
    )
    line = about.describe_device({"model_device": "cpu", "gpu": "RTX 9000", "cuda_available": True, "threads": 2})
    assert line.startswith("CPU (2 torch thread(s)") and "RTX 9000" in line and "runs on the CPU" in line
    line = about.describe_device({"model_device": None, "gpu": None, "cuda_available": False, "threads": 1})
    assert "no model loaded yet" in line and "no CUDA GPU available" in line


def test_device_info_reads_the_device_of_the_model_weights():
    import torch

    class Model:
        net = torch.nn.Linear(2, 1)

    info = about.device_info(Model())
    assert info["model_device"] == "cpu"
    assert info["threads"] == torch.get_num_threads()
    assert about.device_info(None)["model_device"] is None


def test_help_menu_code_does_not_import_torch():
    """The About box may ask torch only when opened (in the worker): importing the module
    and building its text must not load torch on the GUI thread."""
    code = "import sys; from musiclens.app import about; about.about_markdown(); print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------- guide
def test_guide_shows_on_first_start_and_not_again_after_it_is_dismissed(qtbot, plain_window, settings_file):
    guide = about.maybe_show_first_run_guide(plain_window, model="MSD_musicnn")
    assert guide is not None and guide.isVisible() and not guide.isModal()
    text = guide.label.text()
    assert "MSD_musicnn" in text and "demo" in text and "Spectrogram" in text
    assert not about.guide_dismissed()
    qtbot.mouseClick(guide.ok_button, Qt.LeftButton)
    assert not guide.isVisible()
    assert about.guide_dismissed()
    assert "dismissed=true" in settings_file.read_text()
    # the next start (a new window) stays quiet
    other = QMainWindow()
    qtbot.addWidget(other)
    other.show()
    assert about.maybe_show_first_run_guide(other) is None
    assert getattr(other, "_guide_dialog", None) is None


def test_closing_the_guide_window_counts_as_dismissal(qtbot, plain_window, settings_file):
    guide = about.maybe_show_first_run_guide(plain_window, opened="my song.wav")
    assert "my song.wav" in guide.label.text()
    guide.close()
    assert about.guide_dismissed()


def test_the_guide_for_a_midi_file_speaks_of_the_piano_roll_not_of_the_sound(qtbot, plain_window, settings_file):
    text = about.maybe_show_first_run_guide(plain_window, model="MSD_musicnn", opened="jazz (1).MID").label.text()
    assert "jazz (1).MID" in text and "Piano roll" in text and "wait for a recording" in text
    assert "what that network does with the sound" not in text


def test_guide_is_never_shown_in_screenshot_mode_or_with_the_env_switch(
    qtbot, plain_window, settings_file, monkeypatch
):
    assert about.maybe_show_first_run_guide(plain_window, screenshot=True) is None
    monkeypatch.setenv(about.NO_GUIDE_ENV, "1")
    assert about.maybe_show_first_run_guide(plain_window) is None
    assert getattr(plain_window, "_guide_dialog", None) is None
    assert not about.guide_dismissed()  # not shown is not dismissed: a normal start shows it
    monkeypatch.delenv(about.NO_GUIDE_ENV)
    assert about.maybe_show_first_run_guide(plain_window) is not None


def test_help_menu_shows_the_guide_again_after_dismissal(qtbot, settings_file):
    from musiclens.app.window import MainWindow

    about.mark_guide_dismissed()
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    try:
        assert about.maybe_show_first_run_guide(win) is None
        help_action(win, "&What am I looking at?").trigger()
        guide = win._guide_dialog
        assert guide.isVisible() and "Layers and filters" in guide.label.text()
    finally:
        win.close()


def test_app_icon_has_our_sizes():
    icon = about.app_icon()
    sizes = {s.width() for s in icon.availableSizes()}
    assert {16, 32, 48, 256} <= sizes
