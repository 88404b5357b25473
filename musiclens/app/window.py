"""The main window: menus, model picker, transport, dock panels, status bar."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox, QDockWidget, QFileDialog, QLabel, QMainWindow, QProgressBar, QPushButton, QToolBar, QWidget,
)

from musiclens.app.player import Player
from musiclens.app.session import DEFAULT_MODEL, Analysis, ModelSummary, Recording, Session
from musiclens.app.worker import Progress, Worker

AUDIO_FILTER = ("Audio or MIDI (*.wav *.flac *.ogg *.oga *.opus *.mp3 *.aif *.aiff *.mid *.midi *.rmi *.kar);;"
                "MIDI (*.mid *.midi *.rmi *.kar);;All files (*)")
MAX_RECENT = 10


def settings() -> QSettings:
    """Our settings; ``$MUSICLENS_SETTINGS`` points them at an INI file (tests, portable use)."""
    path = os.environ.get("MUSICLENS_SETTINGS")
    if path:
        return QSettings(path, QSettings.IniFormat)
    return QSettings("MusicLens", "MusicLens")


def settings_list(key: str) -> list[str]:
    """A list setting (INI files give a lone string for a one-item list)."""
    value = settings().value(key, []) or []
    return [value] if isinstance(value, str) else list(value)


class MainWindow(QMainWindow):
    ready = Signal()  # the first model is loaded and the first recording analysed

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("MusicLens")
        self.resize(1500, 900)
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        from musiclens.app.gc_guard import GuiThreadCollector

        self.collector = GuiThreadCollector(self)  # before the worker thread starts
        self.worker = Worker(threads=1, parent=self)
        self.session = Session(self.worker, self)
        self.player = Player(self)
        self.docks: dict[str, QDockWidget] = {}
        self._build_status_bar()
        self._build_panels()
        self._build_toolbar()
        self._build_menus()
        self._connect()
        self._restore_layout()
        self.screenshot_mode = False  # set by ``musiclens gui --screenshot``: no restore offer
        QTimer.singleShot(0, lambda: self.screenshot_mode or self.piano_roll.offer_restore())

    # ------------------------------------------------------------------ construction
    def _build_panels(self) -> None:
        from musiclens.app.panels.predictions import PredictionsPanel
        from musiclens.app.panels.spectrogram import SpectrogramView

        from musiclens.app.panels.attribution import AttributionPanel
        from musiclens.app.panels.dream import DreamPanel
        from musiclens.app.panels.kernels import KernelsPanel
        from musiclens.app.panels.layers import LayersPanel
        from musiclens.app.panels.piano_roll import PianoRollPanel
        from musiclens.app.panels.similarity import SimilarityPanel
        from musiclens.app.panels.training import TrainingPanel

        self.spectrogram = SpectrogramView()
        self.predictions = PredictionsPanel()
        self.layers = LayersPanel()
        self.attribution = AttributionPanel()
        self.dream = DreamPanel()
        self.kernels = KernelsPanel()
        self.similarity = SimilarityPanel()
        self.training = TrainingPanel()
        self.piano_roll = PianoRollPanel()
        self.piano_roll.attach(self.session, self.player, self.play)
        spec = self.add_dock("Spectrogram", self.spectrogram, Qt.LeftDockWidgetArea)
        layers = self.add_dock("Layers and filters", self.layers, Qt.LeftDockWidgetArea)
        self.splitDockWidget(spec, layers, Qt.Vertical)
        preds = self.add_dock("Predictions", self.predictions, Qt.RightDockWidgetArea)
        cam = self.add_dock("CAM and saliency", self.attribution, Qt.RightDockWidgetArea)
        self.splitDockWidget(preds, cam, Qt.Vertical)
        dream = self.add_dock("Dream", self.dream, Qt.RightDockWidgetArea)
        self.tabifyDockWidget(layers, dream)
        similarity = self.add_dock("Similarity", self.similarity, Qt.LeftDockWidgetArea)
        self.tabifyDockWidget(layers, similarity)
        kernels = self.add_dock("Kernels", self.kernels, Qt.LeftDockWidgetArea)
        self.tabifyDockWidget(layers, kernels)
        training = self.add_dock("Training", self.training, Qt.LeftDockWidgetArea)
        self.tabifyDockWidget(layers, training)
        piano = self.add_dock("Piano roll", self.piano_roll, Qt.LeftDockWidgetArea)
        self.tabifyDockWidget(spec, piano)
        spec.raise_()
        layers.raise_()
        self._default_sizes = lambda: (
            self.resizeDocks([spec, preds], [1000, 500], Qt.Horizontal),
            self.resizeDocks([spec, layers], [430, 420], Qt.Vertical),
            self.resizeDocks([preds, cam], [560, 290], Qt.Vertical))

    def add_dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title.lower().replace(' ', '-')}")  # for saveState
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetClosable
                         | QDockWidget.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        self.docks[title] = dock
        return dock

    def _build_toolbar(self) -> None:
        bar = QToolBar("Main")
        bar.setObjectName("toolbar-main")
        self.addToolBar(bar)
        bar.addWidget(QLabel(" Model "))
        self.model_picker = QComboBox()
        self.model_picker.setMinimumWidth(180)
        self.model_picker.setToolTip("Bundled models, models you trained and model folders you opened")
        bar.addWidget(self.model_picker)
        bar.addSeparator()
        self.play_button = QPushButton("▶ Play")
        self.play_button.setToolTip("Play / pause (Space)")
        self.play_button.clicked.connect(self.toggle_play)
        bar.addWidget(self.play_button)
        self.time_label = QLabel(" 00:00.0 / 00:00.0 ")
        bar.addWidget(self.time_label)
        self.playing_label = QLabel("")
        bar.addWidget(self.playing_label)

    def _build_menus(self) -> None:
        menu = self.menuBar()
        file = menu.addMenu("&File")
        self._action(file, "&Open…", self.open_dialog, QKeySequence.Open)
        self.recent_menu = file.addMenu("Open &Recent")
        file.addSeparator()
        self._action(file, "Export spectrogram as &PNG…", self.export_spectrogram_png)
        panels = file.addMenu("Export a panel as PNG")
        for title in self.docks:
            panels.addAction(title, lambda title=title: self.export_panel_png(title))
        self._action(file, "Export what plays as &WAV…", self.export_playing_wav)
        file.addSeparator()
        self._action(file, "&Quit", self.close, QKeySequence.Quit)
        self.view_menu = menu.addMenu("&View")
        for title, dock in self.docks.items():
            self.view_menu.addAction(dock.toggleViewAction())
        self.view_menu.addSeparator()
        self._action(self.view_menu, "Reset layout", self.reset_layout)
        model = menu.addMenu("&Model")
        self._action(model, "Open model &folder…", self.open_model_dialog)
        analysis = menu.addMenu("&Analysis")
        self._action(analysis, "&Predict again", lambda: self.session.recording and self.session.analyse())
        self._action(analysis, "&Cancel running jobs", self.worker.cancel_all)
        help_menu = menu.addMenu("&Help")
        self._action(help_menu, "&What am I looking at?", self.show_guide)
        self._action(help_menu, "&About MusicLens", self.about)
        self._refresh_recent()
        QShortcut(QKeySequence(Qt.Key_Space), self, activated=self.toggle_play)

    def _action(self, menu, text, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(shortcut)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.busy_label = QLabel("")
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(lambda: self.worker.cancel_all())
        bar.addPermanentWidget(self.busy_label)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.cancel_button)

    def _connect(self) -> None:
        s = self.session
        s.status.connect(lambda m: self.statusBar().showMessage(m, 15000))
        s.error.connect(self.show_error)
        s.progress.connect(self._on_progress)
        s.model_changed.connect(self._on_model)
        s.recording_changed.connect(self._on_recording)
        s.analysis_ready.connect(self._on_analysis)
        self.worker.busy_changed.connect(self._on_busy)
        self.player.position_changed.connect(self._on_position)
        self.player.state_changed.connect(
            lambda playing: self.play_button.setText("❚❚ Pause" if playing else "▶ Play"))
        self.player.error.connect(self.show_error)
        self.piano_roll.status.connect(lambda m: self.statusBar().showMessage(m, 15000))
        self.spectrogram.seek_requested.connect(self.seek)
        self.layers.layer_selected.connect(self._layer_selected)
        self.layers.filter_activated.connect(self._hear_filter)
        self.attribution.requested.connect(
            lambda method, target, layer: s.attribution(method, target, layer, self._show_attribution))
        self.attribution.cleared.connect(self.spectrogram.clear_overlay)
        self.dream.start_requested.connect(self._start_dream)
        self.kernels.requested.connect(lambda: s.kernels(self.kernels.set_stats))
        self.training.start_requested.connect(self._start_training)
        self.training.cancel_requested.connect(lambda: self.worker.cancel_all(f"train {self.training.arch.currentText()}"))
        self.similarity.requested.connect(
            lambda path: s.similarity(path, self.current_patch(), self.similarity.set_result))
        self.similarity.folder_requested.connect(
            lambda folder: s.class_similarity(folder, self.similarity.set_classes))
        self.dream.stop_requested.connect(lambda: self.worker.cancel_all("dream"))
        self.dream.play_requested.connect(lambda d: self.play(d.audio, d.sample_rate, d.label))
        self.model_picker.activated.connect(self._picked_model)

    # ------------------------------------------------------------------ state
    def start(self, *, model: str = DEFAULT_MODEL, path: str | Path | None = None) -> None:
        """Load ``model`` in the worker, then open ``path`` (the demo by default)."""
        self._populate_models(model)
        self._showcase = path is not None  # first analysis: also show a layer and a Grad-CAM
        self.session.load_model(model, then=lambda: self.open_file(path) if path else None)

    def open_file(self, path: str | Path) -> None:
        from musiclens.core.midi import MIDI_EXTENSIONS

        path = Path(path)
        if path.suffix.lower() in MIDI_EXTENSIONS:  # the piano roll, with the bundled MIDI model
            self.docks["Piano roll"].show()
            self.docks["Piano roll"].raise_()
            self.piano_roll.open_file(path)

            def shown(_result) -> None:  # ``ready`` once its first classification is shown
                self.piano_roll.classified.disconnect(shown)
                self.ready.emit()

            self.piano_roll.opened.connect(lambda _p: self.piano_roll.classified.connect(shown),
                                           Qt.SingleShotConnection)
        else:
            self.session.open(path)
        self._remember(path)

    def _on_model(self, summary: ModelSummary) -> None:
        self.setWindowTitle(f"MusicLens — {summary.name}")
        self.layers.set_model(summary)
        self.attribution.set_model(summary)
        self.dream.set_model(summary)
        self.kernels.clear()
        i = self.model_picker.findData(summary.source) if summary.source else -1
        if i < 0:
            self.model_picker.addItem(summary.name, summary.source or summary.name)
            i = self.model_picker.count() - 1
        self.model_picker.setCurrentIndex(i)

    def _on_recording(self, rec: Recording) -> None:
        self.spectrogram.set_spectrogram(rec.display, rec.duration_s, rec.bin_hz,
                                         f"{rec.path.name} · {rec.caption}")
        self.predictions.clear()
        self.player.load(rec.audio, rec.sample_rate, label=rec.path.name)
        self.playing_label.setText(f" {rec.path.name} ")
        self._on_position(0.0)

    def _on_analysis(self, analysis: Analysis) -> None:
        self.predictions.set_analysis(analysis)
        self.attribution.set_analysis(analysis)
        self.dream.set_analysis(analysis)
        if getattr(self, "_showcase", False):
            self._showcase = False
            self._show_a_first_example()
            return
        if self.layers.selected_layer():
            self._layer_selected(self.layers.selected_layer())
        self.ready.emit()

    def _show_a_first_example(self) -> None:
        """On the first file: open the deepest conv layer's filters and a Grad-CAM of the
        top class, so a new user sees what the panels do; ``ready`` fires when both are done."""
        convs = [name for name, _group, kind in self.session.summary.layers if kind == "conv"]
        if convs:
            self.layers.select_layer(convs[-1])  # computes its activation maps
            self.attribution.layer.setCurrentText(convs[0])  # 2-D maps in any CNN
            self.attribution.run_button.click()

        def idle(busy: bool, _name: str) -> None:
            if not busy:
                self.worker.busy_changed.disconnect(idle)
                self.ready.emit()

        if self.worker.pending():
            self.worker.busy_changed.connect(idle)
        else:
            self.ready.emit()

    # ------------------------------------------------------------------ looking inside
    def current_patch(self) -> int:
        return self.session.patch_at(self.spectrogram.playhead.value())

    def _layer_selected(self, layer: str) -> None:
        if self.session.analysis is not None:
            def show(maps) -> None:  # the user may have picked another layer meanwhile
                if maps.layer == self.layers.selected_layer():
                    self.layers.set_maps(maps)

            self.session.layer_maps(layer, self.current_patch(), show)

    def _hear_filter(self, layer: str, k: int, how: str) -> None:
        self.session.hear_filter(layer, k, self.current_patch(), how, self._play_heard)

    def _play_heard(self, heard) -> None:
        self.spectrogram.set_overlay(heard.mask, start_s=heard.start_s, end_s=heard.end_s,
                                     caption=f"overlay: {heard.label}")
        self.last_heard = heard
        self.play(heard.audio, heard.sample_rate, heard.label, offset_s=heard.start_s)

    def _start_dream(self, options: dict) -> None:
        options = dict(options, patch=self.current_patch())
        if options.get("channels") is None:
            options.pop("channels")
        job = self.session.dream(
            options, lambda d: self.dream.finished(d),
            on_progress=lambda p: self.dream.show_progress(p.fraction, p.message, p.payload),
            on_error=lambda message: self.dream.finished(None, message))
        job.cancelled.connect(lambda: self.dream.finished(None, "stopped"))

    def _start_training(self, options: dict) -> None:
        import time

        from musiclens.app.panels.training import models_home

        out = models_home() / f"{options['arch']}-{Path(options['root']).name}-{time.strftime('%Y%m%d-%H%M%S')}"

        def done(summary: dict) -> None:
            self.training.finished(summary)
            self._add_model_folder(str(out))

        job = self.session.train(
            options, out, done,
            on_progress=lambda p: self.training.show_event(p.fraction, p.message, p.payload),
            on_error=lambda message: self.training.finished(None, message))
        job.cancelled.connect(lambda: self.training.finished(None, "cancelled"))

    def _show_attribution(self, result) -> None:
        self.attribution.set_result(result)
        self.spectrogram.set_overlay(result.values, start_s=result.start_s, end_s=result.end_s,
                                     symmetric=result.signed,
                                     caption=f"overlay: {result.method} for {result.target}")

    def _on_busy(self, busy: bool, name: str) -> None:
        self.busy_label.setText(f"⏳ {name}" if busy else "")
        self.progress_bar.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if busy:
            self.progress_bar.setRange(0, 0)  # indeterminate until a job reports a fraction

    def _on_progress(self, p: Progress) -> None:
        if p.fraction is None:
            self.progress_bar.setRange(0, 0)
        else:
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(int(1000 * p.fraction))
        if p.message:
            self.busy_label.setText(f"⏳ {p.message}")

    def show_error(self, message: str) -> None:
        self.statusBar().showMessage(f"⚠ {message}", 30000)
        self.last_error = message

    # ------------------------------------------------------------------ playback
    def toggle_play(self) -> None:
        """Space: play/pause; with a time selection on the spectrogram, play just that part."""
        rec, selection = self.session.recording, self.spectrogram.selected_range()
        if selection is not None and rec is not None and not self.player.playing:
            a, b = (int(round(t * rec.sample_rate)) for t in selection)
            self.play(rec.audio[a:b], rec.sample_rate, f"{rec.path.name} {selection[0]:.1f}–{selection[1]:.1f} s",
                      offset_s=selection[0])
            return
        self.player.toggle()

    def seek(self, seconds: float) -> None:
        rec = self.session.recording
        if rec is not None and self.player.label != rec.path.name:
            self.player.load(rec.audio, rec.sample_rate, label=rec.path.name)
            self.playing_label.setText(f" {rec.path.name} ")
        self.player.seek(seconds)

    def play(self, audio, sr: int, label: str, *, offset_s: float = 0.0) -> None:
        """Play any audio (an auralisation, a dream) with the playhead at ``offset_s`` + t."""
        self._play_offset = offset_s
        self.playing_label.setText(f" {label} ")
        self.player.play(audio, sr, label=label)

    def _on_position(self, seconds: float) -> None:
        rec = self.session.recording
        offset = getattr(self, "_play_offset", 0.0) if rec is None or self.player.label != rec.path.name else 0.0
        t = seconds + offset
        self.spectrogram.set_playhead(t)
        self.predictions.set_playhead(t)
        total = rec.duration_s if rec else 0.0
        self.time_label.setText(f" {_mmss(t)} / {_mmss(total)} ")

    # ------------------------------------------------------------------ files
    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a recording", "", AUDIO_FILTER)
        if path:
            self.open_file(path)

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_file(urls[0])
            event.acceptProposedAction()

    def _remember(self, path: Path) -> None:
        recent = [p for p in settings_list("recent") if p != str(path)]
        settings().setValue("recent", ([str(path)] + recent)[:MAX_RECENT])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        recent = settings_list("recent")
        for p in recent:
            self.recent_menu.addAction(p, lambda p=p: self.open_file(p))
        self.recent_menu.setEnabled(bool(recent))

    def export_panel_png(self, title: str, path: str | None = None) -> None:
        """Save what a dock shows, as the user sees it, to a PNG."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, f"Export {title}", f"{title.lower().replace(' ', '-')}.png",
                                                  "PNG (*.png)")
        if path:
            self.docks[title].widget().grab().save(path)
            self.statusBar().showMessage(f"saved {path}", 10000)

    def export_spectrogram_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export spectrogram", "spectrogram.png", "PNG (*.png)")
        if path:
            self.spectrogram.plot.grab().save(path)
            self.statusBar().showMessage(f"saved {path}", 10000)

    def export_playing_wav(self) -> None:
        from musiclens.core.audio import save

        if not len(self.player._buffer):
            self.show_error("nothing to export: open a recording or auralise a filter first")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export audio", "musiclens.wav", "WAV (*.wav)")
        if path:
            save(path, self.player._buffer, self.player.rate, subtype="FLOAT")
            self.statusBar().showMessage(f"saved {path}", 10000)

    # ------------------------------------------------------------------ models
    def _populate_models(self, current: str) -> None:
        from musiclens.core.resources import available_for

        self.model_picker.clear()
        for name in available_for("audio"):
            self.model_picker.addItem(name, name)
        for folder in settings_list("model_folders"):
            self.model_picker.addItem(Path(folder).name, folder)
        i = self.model_picker.findData(current)
        if i >= 0:
            self.model_picker.setCurrentIndex(i)

    def _picked_model(self, index: int) -> None:
        name = self.model_picker.itemData(index)
        if name and (self.session.summary is None or name not in (self.session.summary.name,
                                                                    self.session.summary.source)):
            self.session.load_model(name)

    def open_model_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a model folder (weights.safetensors + model.json)")
        if folder:
            self._add_model_folder(folder)
            self.session.load_model(folder)

    def _add_model_folder(self, folder: str) -> None:
        """Remember a model folder and list it in the picker (newest first)."""
        folders = [f for f in settings_list("model_folders") if f != folder]
        settings().setValue("model_folders", [folder] + folders)
        if self.model_picker.findData(folder) < 0:
            self.model_picker.addItem(Path(folder).name, folder)

    # ------------------------------------------------------------------ layout
    def _restore_layout(self) -> None:
        st = settings()
        self._default_state = self.saveState()
        geometry, state = st.value("geometry"), st.value("window_state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        else:  # dock sizes only take once the window has its size
            QTimer.singleShot(0, self._default_sizes)

    def save_layout(self) -> None:
        st = settings()
        st.setValue("geometry", self.saveGeometry())
        st.setValue("window_state", self.saveState())
        st.sync()

    def reset_layout(self) -> None:
        self.restoreState(self._default_state)
        for dock in self.docks.values():
            dock.show()
        self._default_sizes()

    def about(self) -> None:  # versions, device, licences: musiclens.app.about
        from musiclens.app.about import show_about
        return show_about(self)

    def show_guide(self) -> None:  # the first-run guide, again
        from musiclens.app.about import show_guide
        return show_guide(self)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.save_layout()
        self.player.close()
        self.worker.shutdown()
        self.collector.stop()
        super().closeEvent(event)


def _mmss(seconds: float) -> str:
    m, s = divmod(max(0.0, seconds), 60)
    return f"{int(m):02d}:{s:04.1f}"
