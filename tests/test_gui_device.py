"""The window's Model > Device setting (issue 14, item 6): it reaches the loaded model, is
saved, is shown in the status bar like in Help > About, and asking for CUDA where there is
none says so and keeps the model (pytest-qt, offscreen Qt, the real bundled MusiCNN)."""

from __future__ import annotations

import os

import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from conftest import GUI_TIMEOUT_MS, main_window
from musiclens.app.window import settings
from musiclens.core import device as device_mod
from musiclens.core.resources import DEFAULT_MODEL


def load(qtbot, win, model=DEFAULT_MODEL):
    with qtbot.waitSignal(win.session.model_changed, timeout=GUI_TIMEOUT_MS):
        win.start(model=model, path=None)


def expected_label(model) -> str:
    from musiclens.app.about import device_info, short_device

    return f"Device: {short_device(device_info(model))}"


def test_the_device_setting_reaches_the_model_and_the_status_bar(qtbot, window):
    assert [a.data() for a in window.device_actions.values()] == ["auto", "cpu", "cuda"]
    assert window.device == "auto" and window.device_actions["auto"].isChecked()  # the default
    assert window.set_device("cpu")  # before any model: only the setting
    assert settings().value("device") == "cpu" and window.device_actions["cpu"].isChecked()
    load(qtbot, window)
    assert window.session.model.device == torch.device("cpu")
    assert window.device_label.text().strip() == "Device: CPU" == expected_label(window.session.model)
    # the About box's device line starts with the status bar's name
    from musiclens.app.about import describe_device, device_info

    assert describe_device(device_info(window.session.model)).startswith("CPU")
    # Auto: the model is loaded again, on the GPU when there is one (the CPU here)
    with qtbot.waitSignal(window.session.model_changed, timeout=GUI_TIMEOUT_MS):
        window.device_actions["auto"].trigger()
    assert window.session.model.device == device_mod.resolve_device("auto")
    assert window.device == "auto" and settings().value("device") == "auto"
    assert window.device_label.text().strip() == expected_label(window.session.model)
    assert window.device_actions["cuda"].isEnabled() == torch.cuda.is_available()
    assert window.windowTitle() == f"MusicLens — {DEFAULT_MODEL}"


def test_the_saved_device_is_used_by_the_next_window(qtbot, isolated):
    settings().setValue("device", "cpu")
    settings().sync()
    with main_window(qtbot, show=False) as win:
        assert win.device == "cpu" and win.device_actions["cpu"].isChecked()
        load(qtbot, win)
        assert win.session.model.device == torch.device("cpu")


def test_cuda_without_a_gpu_says_so_and_keeps_the_model(qtbot, window, monkeypatch):
    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)  # a CPU-only machine, anywhere
    window.set_device("cpu")
    load(qtbot, window)
    model = window.session.model
    cuda = window.device_actions["cuda"]
    assert not cuda.isEnabled() and "no GPU is available" in cuda.toolTip()  # greyed, with the reason
    assert window.set_device("cuda") is False
    assert "no GPU is available" in window.last_error and "the model stays where it is (CPU)" in window.last_error
    assert window.error_dialog is not None and window.error_dialog.text() == "Could not use the GPU."
    assert window.session.model is model and model.device == torch.device("cpu")
    assert window.device == "cpu" and window.device_actions["cpu"].isChecked()
    assert settings().value("device") == "cpu"
    assert not window.worker.pending()  # nothing was loaded again
    assert window.device_label.text().strip() == "Device: CPU"


def test_a_saved_cuda_on_a_machine_without_a_gpu_falls_back_to_auto(qtbot, isolated, monkeypatch):
    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)
    settings().setValue("device", "cuda")
    settings().sync()
    with main_window(qtbot, show=False) as win:
        win.screenshot_mode = True  # no dialog in the way
        load(qtbot, win)  # the load on cuda fails, the window says why and loads on auto
        assert "no GPU is available" in win.last_error
        assert win.session.model.device == torch.device("cpu")
        assert win.device == "auto" and win.device_actions["auto"].isChecked()
        assert settings().value("device") == "auto"
        assert win.device_label.text().strip() == "Device: CPU"


def test_gui_device_applies_to_this_run_only(window):
    """``musiclens gui --device cpu`` (main.run(device=...)) sets the window's device
    without saving it; Model > Device saves a choice."""
    import inspect

    from musiclens.app import main

    assert "window.set_device(device, save=False)" in inspect.getsource(main.run)
    settings().setValue("device", "auto")
    assert window.set_device("cpu", save=False)
    assert window.device == "cpu" and window.device_actions["cpu"].isChecked()
    assert settings().value("device") == "auto"
