"""The desktop app, driven as a user would (pytest-qt, offscreen Qt, real PortAudio output
captured through ALSA's file plugin, the real bundled MusiCNN)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ALSA_SYSTEM_CONF = Path("/usr/share/alsa/alsa.conf")
# PortAudio reads the ALSA configuration once, when sounddevice is first imported.
if ALSA_SYSTEM_CONF.exists() and "ALSA_CONFIG_PATH" not in os.environ:
    os.environ["ALSA_CONFIG_PATH"] = f"{ALSA_SYSTEM_CONF}:{HERE / 'alsa-capture.conf'}"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt  # noqa: E402

from conftest import GUI_TIMEOUT_MS, main_window, start_and_wait, wait_idle  # noqa: E402
from musiclens.app.main import demo_path  # noqa: E402
from musiclens.app.player import to_device_rate  # noqa: E402


def test_demo_opens_with_spectrogram_and_predictions(qtbot, window):
    start_and_wait(qtbot, window)
    rec, analysis = window.session.recording, window.session.analysis
    assert rec.path == demo_path() and rec.display.shape[0] == 96
    assert window.spectrogram.image.image.shape == rec.display.shape
    assert analysis.probabilities.shape == (10, 50)  # 30 s = 10 patches of 3 s, 50 tags
    assert window.predictions.taggram.image.shape == (window.predictions.count.value(), 10)
    top = [t for t, _ in analysis.top[:3]]
    assert "electronic" in top  # the demo is a synthetic electronic groove
    assert window.windowTitle() == "MusicLens — MSD_musicnn"
    listed = {window.model_picker.itemText(i) for i in range(window.model_picker.count())}
    assert {"MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg"} <= listed
    assert "midi_style_lstm" not in listed  # MIDI models belong to the piano roll
    from musiclens.core import mel_power

    assert mel_power.kernel() is not None  # loading a model prepared the compiled mel projection


def test_filter_click_plays_its_auralisation(qtbot, window, tmp_path, monkeypatch):
    if not ALSA_SYSTEM_CONF.exists():
        pytest.skip("needs ALSA (libasound2, installed with libportaudio2) to capture playback")
    capture = tmp_path / "played.raw"
    monkeypatch.setenv("AUDIO_CAPTURE_FILE", str(capture))
    start_and_wait(qtbot, window)
    layer = "mid end / conv 1"
    assert window.layers.select_layer(layer)
    qtbot.waitUntil(lambda: window.layers.maps is not None and window.layers.maps.layer == layer, timeout=60_000)
    assert window.layers.grid.count() == 64
    item = window.layers.grid.item(0)  # the most energetic filter
    k = int(item.data(Qt.UserRole))
    rect = window.layers.grid.visualItemRect(item)
    with qtbot.waitSignal(window.player.state_changed, timeout=60_000, check_params_cb=lambda playing: playing):
        qtbot.mouseClick(window.layers.grid.viewport(), Qt.LeftButton, pos=rect.center())
    heard = window.last_heard
    assert heard.label.startswith(f"{layer} #{k}")
    qtbot.waitUntil(lambda: not window.player.playing, timeout=20_000)
    window.player.close()

    # what the engine computes for that filter on that patch, independently of the GUI
    from musiclens.core.interpret.auralise import auralise_filter

    audio, _ = window.session.patch_audio(0)
    expected = auralise_filter(window.session.model, audio, layer=layer, filter=k).audio[0]
    assert np.isfinite(expected).all() and np.abs(expected).max() > 1e-3
    expected = to_device_rate(expected / max(1.0, np.abs(expected).max()), 16000)
    played = np.fromfile(capture, dtype="<i2").astype(np.float64) / 32768
    assert np.abs(played).max() > 1e-3, "nothing was played"
    # the device starts with some silence: find the offset by cross-correlation
    from scipy.signal import correlate

    lag = int(np.argmax(correlate(played, expected, mode="valid", method="fft")))
    error = np.abs(played[lag : lag + len(expected)] - expected).max()
    assert error <= 2 / 32768  # equal up to the 16-bit quantisation of what we asked


def test_gradcam_overlay_covers_the_analysed_file(qtbot, window):
    start_and_wait(qtbot, window)
    panel = window.attribution
    panel.method.setCurrentIndex(panel.method.findData("grad-cam"))
    panel.layer.setCurrentText("mid end / conv 3")
    with qtbot.waitSignal(window.worker.busy_changed, timeout=60_000, check_params_cb=lambda busy, _name: not busy):
        qtbot.mouseClick(panel.run_button, Qt.LeftButton)
    result = panel.result
    assert result is not None and result.target == window.session.analysis.top[0][0]
    assert result.values.shape == (96, 10 * 187)
    assert np.isfinite(result.values).all() and np.abs(result.values).max() > 0
    assert window.spectrogram.overlay.isVisible()


def test_dream_starts_and_can_be_cancelled(qtbot, window):
    start_and_wait(qtbot, window)
    panel = window.dream
    panel.steps.setValue(2000)
    with qtbot.waitSignal(window.session.progress, timeout=60_000):
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    assert panel.stop_button.isEnabled()
    qtbot.mouseClick(panel.stop_button, Qt.LeftButton)
    wait_idle(qtbot, window, timeout=30_000)
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()
    # Stop keeps the dream so far: it is what Play and Export use (issue 13, item 5)
    assert panel.result is not None and panel.result.stopped and panel.result.steps < 2000
    assert panel.report.text().startswith(f"stopped at step {panel.result.steps}/2000")
    assert panel.progress.value() < 1000


def test_short_dream_raises_its_target(qtbot, window):
    start_and_wait(qtbot, window)
    panel = window.dream
    panel.steps.setValue(5)
    panel.start.setCurrentIndex(panel.start.findData("patch"))
    qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.result is not None, timeout=120_000)
    r = panel.result
    assert r.objective_after > r.objective_before
    assert np.isfinite(r.audio).all() and np.abs(r.audio).max() > 1e-3


def test_corrupt_file_shows_an_error_and_the_app_stays_usable(qtbot, window, tmp_path):
    start_and_wait(qtbot, window)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage garbage")
    with qtbot.waitSignal(window.session.error, timeout=30_000) as blocker:
        window.open_file(bad)
    assert "broken.wav" in blocker.args[0]
    assert "broken.wav" in window.statusBar().currentMessage()
    assert window.session.recording.path == demo_path()  # what was open is still there
    with qtbot.waitSignal(window.ready, timeout=GUI_TIMEOUT_MS):
        window.open_file(demo_path())


def test_layout_is_restored_after_restart(qtbot, isolated):
    with main_window(qtbot) as first:
        first.docks["Predictions"].close()
        first.docks["Dream"].setFloating(True)
    assert (isolated / "settings.ini").exists()
    with main_window(qtbot) as second:
        assert not second.docks["Predictions"].isVisible()
        assert second.docks["Dream"].isFloating()
        assert second.docks["Spectrogram"].isVisible()


def test_no_audio_device_is_a_message_not_a_crash(qtbot, window, monkeypatch):
    import sounddevice as sd

    def no_device(*_a, **_k):
        raise sd.PortAudioError("Error querying device -1")

    monkeypatch.setattr(sd, "OutputStream", no_device)
    messages = []
    window.player.error.connect(messages.append)
    assert window.player.play(np.zeros(1000, np.float32), 16000) is False
    assert messages and "no audio output" in messages[0]
    assert not window.player.playing


def test_kernels_panel_shows_norms_and_dead_kernels(qtbot, window):
    start_and_wait(qtbot, window)
    with qtbot.waitSignal(window.worker.busy_changed, timeout=60_000, check_params_cb=lambda busy, _name: not busy):
        qtbot.mouseClick(window.kernels.refresh_button, Qt.LeftButton)
    stats = window.kernels.stats
    assert stats["model"] == "MSD_musicnn" and stats["totals"]["kernels"] > 600
    last = stats["conv"][window.kernels.conv.currentIndex()]
    assert window.kernels.norms.plotItem.titleLabel.text.endswith(f"{last['dead']} dead of {len(last['frobenius'])}")
    assert window.kernels.bn.count() == len(stats["batchnorm"]) > 0


def test_similarity_of_a_recording_with_itself_is_one(qtbot, window):
    start_and_wait(qtbot, window)
    with qtbot.waitSignal(window.worker.busy_changed, timeout=120_000, check_params_cb=lambda busy, _name: not busy):
        window.similarity.requested.emit(str(demo_path()))
    r = window.similarity.result
    assert r is not None and len(r.layers) > 10 and r.maps[0][0] == "input"
    assert np.allclose(r.values["pearson"], 1.0, atol=1e-6)
    assert np.allclose(r.values["nmse"], 0.0, atol=1e-9)
    finite = np.isfinite(r.values["cka"])
    assert finite.any() and np.allclose(r.values["cka"][finite], 1.0, atol=1e-6)
    assert (r.values["cka_baseline"][finite] < 1.0).all()


def test_training_panel_trains_saves_and_lists_the_model(qtbot, window, tmp_path):
    import soundfile as sf

    from musiclens.app.panels.training import ARCHS, models_home
    from musiclens.core.models import architectures as archs
    from musiclens.core.models import study

    assert ARCHS == tuple(archs.names()) and set(study.ARCHS) <= set(ARCHS)  # every trainable architecture
    rng = np.random.default_rng(0)
    sr = 22050
    t = np.arange(4 * sr) / sr
    for label, make in (
        ("tones", lambda i: 0.3 * np.sin(2 * np.pi * (220 + 40 * i) * t)),
        ("noise", lambda i: 0.1 * rng.standard_normal(len(t))),
    ):
        (tmp_path / "ds" / label).mkdir(parents=True)
        for i in range(5):
            sf.write(tmp_path / "ds" / label / f"{label}{i}.wav", make(i).astype(np.float32), sr)
    panel = window.training
    panel.folder.setText(str(tmp_path / "ds"))
    panel.epochs.setValue(2)
    qtbot.mouseClick(panel.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: panel.start_button.isEnabled(), timeout=240_000)
    assert "Saved to" in panel.report.text(), panel.report.text()
    assert len(panel.history["train loss"]) >= 1 and np.isfinite(panel.history["train loss"]).all()
    saved = list(models_home().iterdir())
    assert len(saved) == 1 and (saved[0] / "model.json").exists()
    assert window.model_picker.findData(str(saved[0])) >= 0


def test_every_panel_exports_a_png(qtbot, window, tmp_path):
    from PIL import Image

    start_and_wait(qtbot, window)
    for title in window.docks:
        out = tmp_path / f"{title}.png"
        window.export_panel_png(title, str(out))
        with Image.open(out) as image:
            assert image.size[0] > 50 and image.size[1] > 50, title


def test_similarity_within_classes_of_a_folder(qtbot, window, tmp_path):
    import shutil

    import soundfile as sf

    start_and_wait(qtbot, window)
    (tmp_path / "same").mkdir()
    (tmp_path / "mixed").mkdir()
    shutil.copy(demo_path(), tmp_path / "same" / "a.ogg")
    shutil.copy(demo_path(), tmp_path / "same" / "b.ogg")
    rng = np.random.default_rng(1)
    sf.write(tmp_path / "mixed" / "noise.wav", (0.1 * rng.standard_normal(16000 * 4)).astype(np.float32), 16000)
    t = np.arange(16000 * 4) / 16000
    sf.write(tmp_path / "mixed" / "tone.wav", (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000)
    (tmp_path / "lonely").mkdir()  # a class with one file has no pair and is left out
    sf.write(tmp_path / "lonely" / "x.wav", np.zeros(16000 * 4, np.float32), 16000)
    with qtbot.waitSignal(window.worker.busy_changed, timeout=180_000, check_params_cb=lambda busy, _name: not busy):
        window.similarity.folder_requested.emit(str(tmp_path))
    r = window.similarity.classes
    assert r is not None and set(r.per_class) == {"same", "mixed"} and r.pairs == {"same": 1, "mixed": 1}
    assert np.allclose(r.per_class["same"]["pearson"], 1.0, atol=1e-6)
    assert np.allclose(r.per_class["same"]["nmse"], 0.0, atol=1e-9)
    assert np.nanmin(r.per_class["mixed"]["pearson"]) < 0.9
    assert len(window.similarity.curves.listDataItems()) >= 2


def test_cycles_are_collected_on_the_gui_thread_while_a_window_is_open(qtbot):
    import gc
    import weakref

    from musiclens.app.gc_guard import GuiThreadCollector

    assert gc.isenabled()
    thresholds = gc.get_threshold()
    guard = GuiThreadCollector(interval_ms=20)
    try:
        assert not gc.isenabled()  # the worker thread can no longer trigger a collection

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle only the collector frees
        alive = weakref.ref(a)
        del a, b
        # well past generation 0's threshold (frees elsewhere lower the count it reads)
        gc.set_threshold(100, thresholds[1], thresholds[2])
        keep = [[] for _ in range(20_000)]
        qtbot.waitUntil(lambda: alive() is None, timeout=5000)
        assert len(keep) == 20_000
    finally:
        gc.set_threshold(*thresholds)
        guard.stop()
    assert gc.isenabled()
