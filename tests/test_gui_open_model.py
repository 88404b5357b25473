"""File > Open model…: the user's own network, driven as a user would (offscreen Qt). A tiny CNN
defined here is saved as a ``.py`` + weights, as a ``.pt2`` (torch.export) and as TorchScript;
the dialog writes ``model.json``, the model joins the picker, is remembered by a new window,
its layers are listed by kind, the CAM layer is chosen for it; Python code runs only with the
"Run the Python code" box ticked; a TorchScript model's layer tree says why it is empty."""

from __future__ import annotations

import json
import os
import textwrap
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from conftest import GUI_TIMEOUT_MS, main_window, wait_idle
from musiclens.app.window import settings_list

pytestmark = pytest.mark.gui

N_MELS, N_FRAMES, N_LABELS = 32, 64, 3
NET_PY = textwrap.dedent(
    f'''
    import torch
    from torch import nn


    class Net(nn.Module):
        """A tiny CNN: (B, 1, {N_MELS} mel bands, T frames) -> (B, n_labels) logits."""

        def __init__(self, n_labels: int = {N_LABELS}, n_mels: int = {N_MELS}) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(4)
            self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
            self.head = nn.Linear(8 * n_mels, n_labels)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.relu(self.conv2(x))
            return self.head(x.mean(dim=3).flatten(1))
    '''
)


def tiny_net(folder: Path):
    """``folder/net.py`` and an instance of its ``Net`` (random weights, eval mode)."""
    import importlib.util

    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.py").write_text(NET_PY)
    spec = importlib.util.spec_from_file_location(f"tiny_net_{abs(hash(folder))}", folder / "net.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    return module.Net().eval()


@pytest.fixture
def python_source(isolated) -> Path:
    """``net.py`` + ``weights.pt`` (a state dict) in a folder without model.json."""
    import torch

    folder = isolated / "src-py"
    torch.save(tiny_net(folder).state_dict(), folder / "weights.pt")
    return folder / "net.py"


@pytest.fixture
def exported_source(isolated) -> Path:
    import torch

    net = tiny_net(isolated / "code")
    path = isolated / "src-pt2" / "tiny.pt2"
    path.parent.mkdir()
    x = torch.randn(2, 1, N_MELS, N_FRAMES)  # any batch size, a fixed patch length
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},)), path)
    return path


@pytest.fixture
def torchscript_source(isolated) -> Path:
    import torch

    net = tiny_net(isolated / "code")
    path = isolated / "src-ts" / "tiny.ts"
    path.parent.mkdir()
    with warnings.catch_warnings():  # torch.jit is deprecated; users still have such files
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(net, torch.randn(1, 1, N_MELS, N_FRAMES)), path)
    return path


def guessed(qtbot, dialog) -> None:
    """Until the dialog shows its guessed model.json."""
    qtbot.waitUntil(lambda: dialog.describe.isVisible() or "⚠" in dialog.message.text(), timeout=GUI_TIMEOUT_MS)
    assert dialog.describe.isVisible(), dialog.message.text()


def write_and_open(qtbot, window, dialog, labels: str = "calm, busy, loud"):
    """Give the labels, press "Write and open", wait for the model: its summary and folder."""
    dialog.labels.setText(labels)
    assert dialog.open_button.isEnabled(), dialog.message.text()
    folder = Path(dialog.out.text())
    with qtbot.waitSignal(window.session.model_changed, timeout=GUI_TIMEOUT_MS) as loaded:
        dialog.open_button.click()
    wait_idle(qtbot, window)
    return loaded.args[0], folder


def picker(window) -> list:
    return [window.model_picker.itemData(i) for i in range(window.model_picker.count())]


def test_a_python_network_opens_through_the_dialog_and_is_remembered(qtbot, window, isolated, python_source):
    dialog = window.open_model_dialog()
    dialog.set_source(python_source)
    assert Path(dialog.weights.text()) == python_source.parent / "weights.pt"  # found beside it
    # nothing of the user's runs until the box is ticked
    assert dialog.trust.isVisible() and "net.py" in dialog.trust.text() and not dialog.trust.isChecked()
    assert not dialog.open_button.isEnabled() and "tick" in dialog.message.text()
    assert not window.worker.pending() and not dialog.describe.isVisible()
    dialog.trust.setChecked(True)
    guessed(qtbot, dialog)
    assert dialog.outputs.text().startswith(str(N_LABELS))  # the label count, from the output size
    assert dialog.kind.currentData() == "audio"
    dialog.labels.setText("one, two")  # the wrong number of labels: said, and Open stays greyed
    assert not dialog.open_button.isEnabled() and "3 outputs" in dialog.message.text()
    summary, folder = write_and_open(qtbot, window, dialog)
    meta = json.loads((folder / "model.json").read_text())
    assert meta["architecture"]["python"].startswith("net.py") and meta["labels"] == ["calm", "busy", "loud"]
    assert summary.labels == ["calm", "busy", "loud"] and Path(summary.source) == folder
    # in the picker, selected, remembered, and trusted (the user's choice in the dialog)
    assert str(folder) in picker(window) and window.model_picker.currentData() == str(folder)
    assert settings_list("model_folders")[0] == str(folder)
    assert settings_list("trusted_model_folders") == [str(folder)]
    # the layers were found: conv and norm layers in the tree, a conv layer as the CAM layer
    kinds = {kind for _name, _group, kind in summary.layers}
    assert {"conv", "norm"} <= kinds, kinds
    tree_kinds = {
        window.layers.tree.topLevelItem(i).child(j).text(1)
        for i in range(window.layers.tree.topLevelItemCount())
        for j in range(window.layers.tree.topLevelItem(i).childCount())
    }
    assert {"conv", "norm"} <= tree_kinds
    cam = window.session.abilities["cam_layer"]
    assert cam and window.attribution.layer.currentText() == cam
    window.attribution.layer.setCurrentIndex(0)  # and the user can change it
    assert window.attribution.layer.currentIndex() == 0

    with main_window(qtbot) as again:  # a new window (a restart) lists it and loads it
        with qtbot.waitSignal(again.session.model_changed, timeout=GUI_TIMEOUT_MS) as loaded:
            again.start(model=str(folder))
        assert loaded.args[0].labels == ["calm", "busy", "loud"]
        assert str(folder) in picker(again)
        wait_idle(qtbot, again)


def test_python_code_runs_only_with_the_box_ticked(qtbot, window, isolated, python_source):
    from musiclens.core.models import user_models

    draft = user_models.guess_meta(python_source, trust_code=True)
    folder = user_models.write_model_folder(
        draft | {"labels": ["a", "b", "c"]}, isolated / "tiny", weights=python_source.parent / "weights.pt"
    )
    # loading it without the user's consent is refused, with a reason the user sees
    with qtbot.waitSignal(window.session.error, timeout=GUI_TIMEOUT_MS) as failed:
        window.open_model_folder(str(folder))
    assert "Python code" in failed.args[0] and window.session.summary is None
    assert window.error_dialog.isVisible()
    assert str(folder) not in settings_list("model_folders") + settings_list("trusted_model_folders")
    window.error_dialog.close()

    dialog = window.open_model_dialog()
    dialog.set_source(folder)  # a folder with model.json naming net.py: the box is asked for
    assert dialog.trust.isVisible() and not dialog.open_button.isEnabled() and "tick" in dialog.message.text()
    dialog.open_button.click()  # greyed: nothing happens
    assert not window.worker.pending()
    dialog.trust.setChecked(True)
    assert dialog.open_button.isEnabled() and dialog.open_button.text() == "Open"
    with qtbot.waitSignal(window.session.model_changed, timeout=GUI_TIMEOUT_MS):
        dialog.open_button.click()
    wait_idle(qtbot, window)
    assert window.session.summary.labels == ["a", "b", "c"]
    assert settings_list("trusted_model_folders") == [str(folder)]


def test_an_exported_program_needs_no_trust_and_shows_its_layers(qtbot, window, isolated, exported_source):
    dialog = window.open_model_dialog()
    dialog.set_source(exported_source)
    assert dialog.trust.isHidden()  # no code of the user's runs
    guessed(qtbot, dialog)
    assert dialog.outputs.text().startswith(str(N_LABELS))
    assert dialog.patch.value() == N_FRAMES  # the program's fixed input length
    assert "32 mel bands" in dialog.front_end.text()
    dialog.sample_rate.setValue(16000)
    summary, folder = write_and_open(qtbot, window, dialog)
    meta = json.loads((folder / "model.json").read_text())
    assert meta["architecture"] == {"exported": exported_source.name} and (folder / exported_source.name).is_file()
    assert meta["front_end"]["sample_rate"] == 16000 and summary.sample_rate == 16000
    assert {"conv", "norm"} <= {kind for _n, _g, kind in summary.layers}
    assert window.attribution.layer.currentText() == window.session.abilities["cam_layer"]
    assert settings_list("trusted_model_folders") == []  # nothing to trust
    assert str(folder) in picker(window)


def test_a_torchscript_model_says_why_its_layer_tree_is_empty(qtbot, window, isolated, torchscript_source):
    dialog = window.open_model_dialog()
    dialog.set_source(torchscript_source)
    assert dialog.trust.isHidden()
    guessed(qtbot, dialog)
    summary, _folder = write_and_open(qtbot, window, dialog)
    assert summary.layers == []
    tree = window.layers.tree
    assert tree.topLevelItemCount() == 1
    line = " ".join(tree.topLevelItem(0).text(0).split())
    assert "TorchScript" in line and "cannot be hooked" in line, line
    assert "TorchScript" in window.layers.info.text()
    # the CAM layer and the kernel statistics say why not, in one line; predictions work
    assert window.attribution.layer.count() == 0 and "cannot be hooked" in window.attribution.layer.placeholderText()
    assert not window.kernels.refresh_button.isEnabled() and "TorchScript" in window.kernels.summary.text()
    box = window.show_abilities()
    shown = box.text() + box.informativeText()
    assert "predict: works" in shown and "layers: not available" in shown
    box.close()


def test_what_cannot_be_opened_is_said_in_the_dialog(qtbot, window, isolated, python_source):
    import torch

    dialog = window.open_model_dialog()
    dialog.set_source(python_source.parent / "weights.pt")  # weights alone never run code
    assert dialog.trust.isHidden()
    qtbot.waitUntil(lambda: "⚠" in dialog.message.text(), timeout=GUI_TIMEOUT_MS)
    assert "weights only" in dialog.message.text() and not dialog.open_button.isEnabled()

    # a program exported for a batch of one item: the writer's check says so, nothing is kept
    net = tiny_net(isolated / "code")
    one = isolated / "src-one" / "one.pt2"
    one.parent.mkdir()
    torch.export.save(torch.export.export(net, (torch.randn(1, 1, N_MELS, N_FRAMES),)), one)
    dialog.set_source(one)
    guessed(qtbot, dialog)
    dialog.labels.setText("a, b, c")
    out = Path(dialog.out.text())
    dialog.open_button.click()
    qtbot.waitUntil(lambda: "⚠" in dialog.message.text(), timeout=GUI_TIMEOUT_MS)
    assert "batch of 1" in dialog.message.text(), dialog.message.text()
    assert not (out / "model.json").exists() and dialog.isVisible() and window.session.summary is None
    dialog.close()


def test_a_guess_for_an_earlier_choice_is_not_shown(qtbot, window, python_source, exported_source):
    dialog = window.open_model_dialog()
    dialog.set_source(python_source)
    dialog.trust.setChecked(True)  # the guess of net.py starts
    assert window.worker.pending()
    dialog.set_source(exported_source)  # changed while it runs
    guessed(qtbot, dialog)
    wait_idle(qtbot, window)
    assert dialog.meta["architecture"] == {"exported": exported_source.name}
    assert dialog.trust.isHidden() and dialog.patch.value() == N_FRAMES
    dialog.close()
