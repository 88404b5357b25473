"""The main window: menus, model picker, transport, dock panels, status bar."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QToolBar,
    QWidget,
)

from musiclens.app.player import Player
from musiclens.app.session import DEFAULT_MODEL, Analysis, ModelSummary, Recording, Session
from musiclens.app.worker import Worker

AUDIO_FILTER = (
    "Audio or MIDI (*.wav *.flac *.ogg *.oga *.opus *.mp3 *.aif *.aiff *.mid *.midi *.rmi *.kar);;"
    "MIDI (*.mid *.midi *.rmi *.kar);;All files (*)"
)
MAX_RECENT = 10
# failures the user must see (a dialog as well as the status bar): session job names
MUST_SEE_FAILURES = ("open ", "load model ", "use the GPU")
# Model > Device: (setting, menu text, tooltip); the words of musiclens.core.device.DEVICE_CHOICES
DEVICE_MENU = (
    ("auto", "&Auto (the GPU when there is one)", "Run the model on the GPU when one is present, else on the CPU"),
    ("cpu", "&CPU", "Run the model on the CPU"),
    ("cuda", "CU&DA GPU", "Run the model on the CUDA GPU"),
)
DEVICE_NAMES = {"auto": "Auto", "cpu": "CPU", "cuda": "CUDA GPU"}


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


class FitScrollArea(QScrollArea):
    """A panel that scrolls only where its dock is smaller than the panel's minimum size;
    otherwise it fills the dock (a resizable QScrollArea keeps word-wrapping panels at their
    preferred height, so they would always scroll)."""

    def __init__(self, widget: QWidget) -> None:
        super().__init__()
        self.setFrameShape(QFrame.NoFrame)
        self.setWidgetResizable(False)
        self.setWidget(widget)
        widget.installEventFilter(self)

    def sizeHint(self):  # noqa: N802
        return self.widget().sizeHint()

    def fit(self) -> None:
        panel, view = self.widget(), self.maximumViewportSize()
        least = panel.minimumSizeHint().expandedTo(panel.minimumSize())
        bar = self.style().pixelMetric(self.style().PixelMetric.PM_ScrollBarExtent)
        w, h = view.width(), view.height()
        if least.height() > h:  # a vertical scroll bar takes its width
            w -= bar
        if least.width() > w:
            h -= bar
        panel.resize(max(w, least.width()), max(h, least.height()))

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.fit()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if obj is self.widget() and event.type() == event.Type.LayoutRequest:
            QTimer.singleShot(0, self.fit)
        return False


class MainWindow(QMainWindow):
    ready = Signal()  # the first model is loaded and the first recording analysed

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("MusicLens")
        self.resize(1500, 900)
        self._fit_screen()
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        from musiclens.app.gc_guard import GuiThreadCollector

        self.collector = GuiThreadCollector(self)  # before the worker thread starts
        self.worker = Worker(threads=1, name="analyses", parent=self)
        # training gets its own thread: analyses never wait behind it (one torch thread each)
        self.train_worker = Worker(threads=1, name="training", parent=self)
        self.session = Session(self.worker, self, long_worker=self.train_worker)
        self.player = Player(self)
        self.docks: dict[str, QDockWidget] = {}
        self.panels: dict[str, QWidget] = {}  # title -> the panel (a dock's widget may scroll it)
        self.error_dialog: QMessageBox | None = None  # the last failure the user must see
        self._play_on_recording = True  # what plays is (part of) the open recording
        saved = str(settings().value("device", "auto") or "auto").strip().lower()
        self.device = saved if saved in DEVICE_NAMES else "auto"  # Model > Device (saved in the settings)
        self._device_before: str | None = None  # the setting to go back to if loading on self.device fails
        self._asked: tuple[str, object] | None = None  # the model last asked for, and its ``then``
        self._build_status_bar()
        self._build_panels()
        self._build_toolbar()
        self._build_menus()
        self._connect()
        self._restore_layout()
        self.screenshot_mode = False  # set by ``musiclens gui --screenshot``: no restore offer
        QTimer.singleShot(0, lambda: self.screenshot_mode or self._offer_restore())

    def _fit_screen(self) -> None:
        """On a screen smaller than the default size (a 1280x800 or 1366x768 laptop), start
        maximised, and smaller than the screen once un-maximised."""
        from PySide6.QtGui import QGuiApplication

        screen = QGuiApplication.primaryScreen()
        if screen is None or QGuiApplication.platformName() == "offscreen":  # a fake 800x600 screen
            return
        free = screen.availableGeometry()
        if self.width() > free.width() or self.height() > free.height():  # with its title bar, too
            self.resize(min(self.width(), free.width() - 20), min(self.height(), free.height() - 60))
            self.setWindowState(self.windowState() | Qt.WindowMaximized)  # a laptop: all of the screen

    # ------------------------------------------------------------------ construction
    def _build_panels(self) -> None:
        from musiclens.app.panels.attribution import AttributionPanel
        from musiclens.app.panels.dream import DreamPanel
        from musiclens.app.panels.kernels import KernelsPanel
        from musiclens.app.panels.layers import LayersPanel
        from musiclens.app.panels.piano_roll import PianoRollPanel
        from musiclens.app.panels.predictions import PredictionsPanel
        from musiclens.app.panels.similarity import SimilarityPanel
        from musiclens.app.panels.spectrogram import SpectrogramView
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
        self.piano_roll.attach(
            self.session, self.player, lambda audio, sr, label: self.play(audio, sr, label, on_recording=False)
        )
        spec = self.add_dock("Spectrogram", self.spectrogram, Qt.LeftDockWidgetArea)
        layers = self.add_dock("Layers and filters", self.layers, Qt.LeftDockWidgetArea)
        self.splitDockWidget(spec, layers, Qt.Vertical)
        preds = self.add_dock("Predictions", self.predictions, Qt.RightDockWidgetArea)
        cam = self.add_dock("CAM and saliency", self.attribution, Qt.RightDockWidgetArea, scroll=True)
        self.splitDockWidget(preds, cam, Qt.Vertical)
        from musiclens.app.panels.explanation import ExplanationPanel

        self.explanation = ExplanationPanel()  # tabbed with CAM and saliency
        self.tabifyDockWidget(
            cam, self.add_dock("Hear the explanation", self.explanation, Qt.RightDockWidgetArea, scroll=True)
        )
        cam.raise_()
        # tall forms scroll inside their docks: the window fits a 1366x768 laptop screen
        dream = self.add_dock("Dream", self.dream, Qt.RightDockWidgetArea, scroll=True)
        self.tabifyDockWidget(layers, dream)
        similarity = self.add_dock("Similarity", self.similarity, Qt.LeftDockWidgetArea)
        self.tabifyDockWidget(layers, similarity)
        kernels = self.add_dock("Kernels", self.kernels, Qt.LeftDockWidgetArea)
        self.tabifyDockWidget(layers, kernels)
        training = self.add_dock("Training", self.training, Qt.LeftDockWidgetArea, scroll=True)
        self.tabifyDockWidget(layers, training)
        from musiclens.app.panels.faithfulness import FaithfulnessPanel

        self.faithfulness = FaithfulnessPanel()  # "Compare methods", opened from CAM and saliency
        self.tabifyDockWidget(layers, self.add_dock("Compare methods", self.faithfulness, Qt.LeftDockWidgetArea))
        piano = self.add_dock("Piano roll", self.piano_roll, Qt.LeftDockWidgetArea)
        self.tabifyDockWidget(spec, piano)
        from musiclens.app.panels.study_report import StudyReportPanel

        self.study_report = StudyReportPanel()  # Studies menu: musiclens.app.studies_menu
        self.tabifyDockWidget(spec, self.add_dock("Study report", self.study_report, Qt.LeftDockWidgetArea))
        spec.raise_()
        layers.raise_()
        self._default_sizes = lambda: (
            self.resizeDocks(
                [spec, preds],
                [self.width() - min(500, max(360, self.width() // 3)), min(500, max(360, self.width() // 3))],
                Qt.Horizontal,
            ),
            self.resizeDocks([spec, layers], [430, 420], Qt.Vertical),
            self.resizeDocks([preds, cam], [560, 290], Qt.Vertical),
        )

    def add_dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea, *, scroll: bool = False) -> QDockWidget:
        """``scroll``: the panel scrolls inside its dock when the dock is smaller than it."""
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title.lower().replace(' ', '-')}")  # for saveState
        self.panels[title] = widget
        if scroll:
            dock.setWidget(FitScrollArea(widget))
        else:
            dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetClosable | QDockWidget.DockWidgetFloatable
        )
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
        self._action(file, "Open &model…", self.open_model_dialog)
        self.recent_menu = file.addMenu("Open &Recent")
        self._action(file, "Open &batch results…", lambda: self.open_batch_results())
        file.addSeparator()
        self._action(file, "Export spectrogram as &PNG…", self.export_spectrogram_png)
        panels = file.addMenu("Export a panel as PNG")
        for title in self.docks:
            panels.addAction(title, lambda title=title: self.export_panel_png(title))
        self._action(file, "Export what plays as &WAV…", self.export_playing_wav)
        file.addSeparator()
        self._action(file, "&Quit", self.close, QKeySequence.Quit)
        self.view_menu = menu.addMenu("&View")
        for dock in self.docks.values():
            self.view_menu.addAction(dock.toggleViewAction())
        self.view_menu.addSeparator()
        self._action(self.view_menu, "Reset layout", self.reset_layout)
        model = menu.addMenu("&Model")
        self._action(model, "&Open model…", self.open_model_dialog)
        self._action(model, "What this model &can do", self.show_abilities)
        self._build_device_menu(model)
        analysis = menu.addMenu("&Analysis")
        self._action(analysis, "&Predict again", lambda: self.session.recording and self.session.analyse())
        self._action(analysis, "&Cancel running jobs", lambda: self.job_queue.cancel_all())
        from musiclens.app.studies_menu import StudiesMenu

        self.studies = StudiesMenu(self, menu.addMenu("&Studies"))
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
        from musiclens.app.jobs import JobQueueButton

        bar = self.statusBar()
        self.device_label = QLabel(f" Device: {DEVICE_NAMES[self.device]}… ")  # the model's, once loaded
        self.device_label.setObjectName("device-label")
        self.device_label.setToolTip("Where the model runs (Model > Device); shown once the model has loaded")
        bar.addPermanentWidget(self.device_label)
        self.job_queue = JobQueueButton([self.train_worker, self.worker])  # running + queued jobs
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.setToolTip("Cancel every job (one job: the job list's menu)")
        self.cancel_button.clicked.connect(lambda: self.job_queue.cancel_all())
        bar.addPermanentWidget(self.job_queue)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.cancel_button)

    def _connect(self) -> None:
        s = self.session
        s.status.connect(lambda m: self.statusBar().showMessage(m, 15000))
        s.error.connect(self.show_error)
        s.model_changed.connect(self._on_model)
        s.recording_changed.connect(self._on_recording)
        s.analysis_ready.connect(self._on_analysis)
        for worker in (self.worker, self.train_worker):
            worker.changed.connect(self._on_jobs)
        self.player.position_changed.connect(self._on_position)
        self.player.state_changed.connect(lambda playing: self.play_button.setText("❚❚ Pause" if playing else "▶ Play"))
        self.player.error.connect(self.show_error)
        self.piano_roll.status.connect(lambda m: self.statusBar().showMessage(m, 15000))
        self.spectrogram.seek_requested.connect(self.seek)
        self.layers.layer_selected.connect(self._layer_selected)
        self.layers.filter_activated.connect(self._hear_filter)
        self.attribution.requested.connect(
            lambda method, target, layer: s.attribution(method, target, layer, self._show_attribution)
        )
        self.attribution.cleared.connect(self.spectrogram.clear_overlay)
        self.faithfulness.attach(s, self.attribution, self.current_patch)
        self.attribution.compare_requested.connect(
            lambda: (self.docks["Compare methods"].show(), self.docks["Compare methods"].raise_())
        )
        self.explanation.requested.connect(
            lambda method, target, layer, top, soft, attr: s.hear_explanation(
                method, target, layer, top, soft, self._show_explanation, attribution=attr
            )
        )
        self.explanation.play_requested.connect(lambda y, sr, label, t0: self.play(y, sr, label, offset_s=t0))
        self.dream.start_requested.connect(self._start_dream)
        self.kernels.requested.connect(lambda: s.kernels(self.kernels.set_stats))
        self.training.start_requested.connect(self._start_training)
        self.training.cancel_requested.connect(self._cancel_training)  # the training only
        self.similarity.requested.connect(
            lambda path: s.similarity(path, self.current_patch(), self.similarity.set_result)
        )
        self.similarity.folder_requested.connect(lambda folder: s.class_similarity(folder, self.similarity.set_classes))
        self.dream.stop_requested.connect(self.session.stop_dream)  # ends with the dream so far
        self.attribution.display_changed.connect(
            lambda: self.attribution.result is not None and self._show_attribution(self.attribution.result)
        )
        for a, b in (
            (self.attribution.opacity, self.spectrogram.opacity),
            (self.attribution.contrast, self.spectrogram.contrast),
        ):  # one control, two places
            a.valueChanged.connect(b.setValue)
            b.valueChanged.connect(a.setValue)
        self.dream.play_requested.connect(lambda d: self.play(d.audio, d.sample_rate, d.label, on_recording=False))
        self.model_picker.activated.connect(self._picked_model)
        self.piano_roll.opened.connect(lambda path: self._remember(Path(path)))  # only what opened
        self.piano_roll.train_requested.connect(
            lambda: (self.docks["Training"].show(), self.docks["Training"].raise_())
        )
        self.piano_roll.discard_button.clicked.connect(  # nothing restored: back to the recording
            lambda: self.piano_roll.editor is None and self.docks["Spectrogram"].raise_()
        )
        from musiclens.app.dock_hints import AudioDockHints

        self.audio_hints = AudioDockHints(self)  # a MIDI file and no recording: the audio docks say so

    # ------------------------------------------------------------------ state
    def start(self, *, model: str = DEFAULT_MODEL, path: str | Path | None = None) -> None:
        """Load ``model`` in the worker, then open ``path`` (the demo by default)."""
        self._populate_models(model)
        self._showcase = path is not None  # first analysis: also show a layer and a Grad-CAM
        self._load_model(model, then=lambda: self.open_file(path) if path else None)
        if self.device == "cuda" and self._device_before is None:
            self._device_before = "auto"  # a saved "cuda" on a machine without a GPU: fall back

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

            self.piano_roll.opened.connect(
                lambda _p: self.piano_roll.classified.connect(shown), Qt.SingleShotConnection
            )
        else:
            if self.piano_roll.restore_bar.isHidden():  # the recording to the front
                self.docks["Spectrogram"].raise_()
            self.session.open(path)
        # Open Recent gets the file once it has opened (_on_recording, piano_roll.opened)

    def _on_model(self, summary: ModelSummary) -> None:
        self.setWindowTitle(f"MusicLens — {summary.name}")
        self._show_device()
        self.layers.set_model(summary)
        self.attribution.set_model(summary)
        self.explanation.set_model(summary)
        self.dream.set_model(summary)
        self.kernels.clear()
        self._clear_results()
        self._select_model(summary)
        self._show_abilities(summary)

    def _show_abilities(self, summary: ModelSummary) -> None:
        """What this model cannot do, in one line where it would be missed (a TorchScript model
        has no layer hooks: the layer tree, the CAM layer and the Kernels panel say so; every
        line: Model > What this model can do), and the CAM layer chosen for the user's network."""
        from musiclens.app.open_model import headline

        limits: dict = self.session.abilities.get("limits", {})
        if not summary.layers:
            why = limits.get("layers") or "the model lists no layers to look inside"
            self.layers.show_unavailable(headline(why), why[0].upper() + why[1:])
        self.attribution.layer.setPlaceholderText(headline(limits["cam"]) if "cam" in limits else "")
        self.attribution.layer.setToolTip(f"CAM: {limits['cam']}" if "cam" in limits else "")
        kernels = limits.get("kernels")
        self.kernels.refresh_button.setEnabled(kernels is None)
        if kernels:
            self.kernels.summary.setText(f"Kernel statistics are not available: {kernels}")
        cam = self.session.abilities.get("cam_layer")  # the last layer with a time-frequency output
        if cam and any(name == cam for name, _g, _k in summary.layers):
            if self.attribution.layer.findText(cam) < 0:
                self.attribution.layer.addItem(cam)
            self.attribution.layer.setCurrentText(cam)
        lines = self.session.abilities.get("lines") or []
        self.model_picker.setToolTip("\n".join([f"{summary.name}: {summary.source or 'bundled'}", *lines]))

    def show_abilities(self) -> QMessageBox | None:
        """Model > What this model can do: one line per feature, what works and why not."""
        summary = self.session.summary
        if summary is None:
            return None
        lines = self.session.abilities.get("lines") or [
            f"{summary.name}: a MusicLens model family; every panel works with it"
        ]
        box = QMessageBox(QMessageBox.Information, "What this model can do", lines[0], QMessageBox.Ok, self)
        box.setInformativeText("\n".join(f"• {line}" for line in lines[1:]))
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.open()
        return box

    def _select_model(self, summary: ModelSummary) -> None:
        """Show ``summary``'s model in the picker (listed once: bundled by name, folders by path)."""
        from musiclens.core.resources import bundled_models_dir

        i = self.model_picker.findData(summary.source) if summary.source else -1
        if i < 0 and summary.source and Path(summary.source).parent == bundled_models_dir():
            i = self.model_picker.findData(Path(summary.source).name)  # bundled: listed by name
        if i < 0:
            self.model_picker.addItem(summary.name, summary.source or summary.name)
            i = self.model_picker.count() - 1
        self.model_picker.setCurrentIndex(i)

    def _on_recording(self, rec: Recording) -> None:
        self.spectrogram.set_spectrogram(rec.display, rec.duration_s, rec.bin_hz, f"{rec.path.name} · {rec.caption}")
        self.predictions.clear()
        if self.similarity.result is not None:  # a comparison of the previous recording
            self.similarity.clear()
        self.attribution.clear()
        self.explanation.clear()
        self.player.load(rec.audio, rec.sample_rate, label=rec.path.name)
        self.playing_label.setText(f" {rec.path.name} ")
        self._on_position(0.0)
        if rec.path != getattr(self, "_recording_path", None):  # not the same file again (a new model)
            self._recording_path = rec.path
            self._remember(rec.path)

    def _clear_results(self) -> None:
        """What the previous model computed (CAM text, similarity curves and maps)."""
        self.attribution.clear()
        self.similarity.clear()
        self.spectrogram.clear_overlay()

    def _offer_restore(self) -> None:
        """Unsaved piano-roll edits: the piano roll comes to the front with its restore bar."""
        if self.piano_roll.offer_restore():
            self.docks["Piano roll"].show()
            self.docks["Piano roll"].raise_()

    def _on_analysis(self, analysis: Analysis) -> None:
        self.predictions.set_analysis(analysis)
        self.attribution.set_analysis(analysis)
        self.explanation.set_analysis(analysis)
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
        """Hear a filter on the patch the grid shows (not wherever the playhead is now)."""
        maps = self.layers.maps
        patch = maps.patch if maps is not None and maps.layer == layer else self.current_patch()
        target = self.layers.target_dbfs if self.layers.normalise.isChecked() else None
        self.session.hear_filter(layer, k, patch, how, self._play_heard, normalise_to=target)

    def _play_heard(self, heard) -> None:
        self.spectrogram.set_overlay(
            heard.mask,
            start_s=heard.start_s,
            end_s=heard.end_s,
            caption=f"overlay: {heard.label}",
            what=f"{heard.label}: mask (positive part, max 1)",
        )
        self.last_heard = heard
        self.layers.show_heard(heard)
        self.play(heard.audio, heard.sample_rate, heard.label, offset_s=heard.start_s)
        label = self.player.label

        def ended(playing: bool) -> None:  # back to the clip's start: the patch the grid shows
            if playing:
                return
            self.player.state_changed.disconnect(ended)
            if self.player.label == label and self.player.position_s >= self.player.duration_s - 1e-6:
                self.player.seek(0.0)

        self.player.state_changed.connect(ended)

    def _start_dream(self, options: dict) -> None:
        options = dict(options, patch=self.current_patch())
        if options.get("channels") is None:
            options.pop("channels")
        job = self.session.dream(
            options,
            lambda d: self.dream.finished(d),
            on_progress=lambda p: self.dream.show_progress(p.fraction, p.message, p.payload),
            on_error=lambda message: self.dream.finished(None, message),
        )
        job.cancelled.connect(lambda: self.dream.finished(None, "cancelled"))

    def _start_training(self, options: dict) -> None:
        import time

        from musiclens.app.panels.training import models_home

        out = models_home() / f"{options['arch']}-{Path(options['root']).name}-{time.strftime('%Y%m%d-%H%M%S')}"

        def done(summary: dict) -> None:
            self.training.finished(summary)
            if summary.get("kind") == "midi":  # MIDI models read notes: the piano roll's model from now on
                self.session.midi_model_name = str(out)
                self.statusBar().showMessage(f"the piano roll now uses {out.name}: open a MIDI file", 15000)
            else:
                self._add_model_folder(str(out))

        def cancelled() -> None:  # the best model so far was saved when an epoch had ended
            summary = job.partial or {}
            if summary.get("out"):
                self._add_model_folder(summary["out"])
            self.training.cancelled(summary)

        job = self.session.train(
            options,
            out,
            done,
            on_progress=lambda p: self.training.show_event(p.fraction, p.message, p.payload),
            on_error=lambda message: self.training.finished(None, message),
        )
        job.cancelled.connect(cancelled)
        self._training_job = job

    def _cancel_training(self) -> None:
        job = getattr(self, "_training_job", None)
        if job is not None and job.state != "done":
            job.cancel()
            self._on_jobs()

    def _show_explanation(self, result) -> None:
        """Scores in the panel; the cells used drawn over the spectrogram."""
        self.explanation.set_result(result)
        self.spectrogram.set_overlay(
            result.mask,
            start_s=result.start_s,
            end_s=result.end_s,
            caption=f"overlay: cells {result.method} used for {result.target}",
            what=f"cells used: top {result.top:g} % of {result.method} for '{result.target}'",
        )

    def _show_attribution(self, result) -> None:
        self.attribution.set_result(result)
        values, signed, what, ends = self.attribution.display(result)
        self.spectrogram.set_overlay(
            values,
            start_s=result.start_s,
            end_s=result.end_s,
            symmetric=signed,
            caption=f"overlay: {result.method} for {result.target}",
            what=what,
            ends=ends,
        )

    def _on_jobs(self) -> None:
        """Status bar: the job list, and the progress of the job the user waits for (a
        running analysis before a training run)."""
        self.job_queue.refresh()
        jobs = self.job_queue.jobs()
        self.progress_bar.setVisible(bool(jobs))
        self.cancel_button.setVisible(bool(jobs))
        running = [job for job, state in jobs if state == "running"]
        shown = next((job for job in running if job in self.worker.pending()), running[0] if running else None)
        p = shown.last_progress if shown is not None else None
        if p is None or p.fraction is None:
            self.progress_bar.setRange(0, 0)  # indeterminate until a job reports a fraction
        else:
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(int(1000 * p.fraction))

    def show_error(self, message: str) -> None:
        self.statusBar().showMessage(f"⚠ {message}", 30000)
        self.last_error = message
        if message.startswith("load model ") and self.session.summary is not None:
            self._select_model(self.session.summary)  # the picker shows the model in use
        if message.startswith("load model ") and self._device_before is not None:
            self._revert_device()
        if message.startswith(MUST_SEE_FAILURES) and not self.screenshot_mode:
            self._show_error_dialog(message)
        cam = f"{self.attribution.method.currentData()} for {self.attribution.target.currentData()}: "
        waiting = (  # a panel that says "computing…" says why it will not come (e.g. a layer without filters)
            (f"activations of {self.layers.selected_layer()}: ", self.layers.info),
            (cam, self.attribution.note),
        )
        for job, label in waiting:
            if message.startswith(job) and label.text().startswith("computing"):
                label.setText(f"⚠ {message[len(job) :]}")

    def _show_error_dialog(self, message: str) -> None:
        """A non-modal warning (one at a time: a newer failure replaces the text)."""
        if self.error_dialog is None:
            self.error_dialog = QMessageBox(QMessageBox.Warning, "MusicLens", "", QMessageBox.Ok, self)
            self.error_dialog.setWindowModality(Qt.NonModal)
        what, _, detail = message.partition(": ")
        self.error_dialog.setText(f"Could not {what}.")
        self.error_dialog.setInformativeText(detail)
        self.error_dialog.show()
        self.error_dialog.raise_()

    # ------------------------------------------------------------------ playback
    def toggle_play(self) -> None:
        """Space: play/pause; with a time selection on the spectrogram, play just that part."""
        rec, selection = self.session.recording, self.spectrogram.selected_range()
        if selection is not None and rec is not None and not self.player.playing:
            a, b = (int(round(t * rec.sample_rate)) for t in selection)
            self.play(
                rec.audio[a:b],
                rec.sample_rate,
                f"{rec.path.name} {selection[0]:.1f}–{selection[1]:.1f} s",
                offset_s=selection[0],
            )
            return
        self.player.toggle()

    def seek(self, seconds: float) -> None:
        rec = self.session.recording
        if rec is not None and self.player.label != rec.path.name:
            self.player.load(rec.audio, rec.sample_rate, label=rec.path.name)
            self.playing_label.setText(f" {rec.path.name} ")
        self.player.seek(seconds)

    def play(self, audio, sr: int, label: str, *, offset_s: float = 0.0, on_recording: bool = True) -> None:
        """Play any audio (an auralisation, a dream) with the playhead at ``offset_s`` + t.

        ``on_recording``: it is a part of the open recording (the spectrogram's playhead
        follows); otherwise (MIDI, a dream) the time label shows its own time and length."""
        self._play_offset = offset_s
        self._play_on_recording = on_recording
        self.playing_label.setText(f" {label} ")
        self.player.play(audio, sr, label=label)

    def _on_position(self, seconds: float) -> None:
        rec = self.session.recording
        if rec is not None and self.player.label == rec.path.name:  # the recording itself
            t, total = seconds, rec.duration_s
        elif rec is not None and self._play_on_recording:  # a part of it (a selection, a filter)
            t, total = seconds + getattr(self, "_play_offset", 0.0), rec.duration_s
        else:  # something else (MIDI, a dream): its own time and length
            self.time_label.setText(f" {_mmss(seconds)} / {_mmss(self.player.duration_s)} ")
            return
        self.spectrogram.set_playhead(t)
        self.predictions.set_playhead(t)
        self.time_label.setText(f" {_mmss(t)} / {_mmss(total)} ")

    # ------------------------------------------------------------------ files
    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a recording", "", AUDIO_FILTER)
        if path:
            self.open_file(path)

    def open_batch_results(self, path: str | Path | None = None):
        """File > Open batch results…: a ``musiclens batch`` table; a row opens its file."""
        from musiclens.app.panels.batch_results import open_batch_results

        return open_batch_results(self, path)

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
            path, _ = QFileDialog.getSaveFileName(
                self, f"Export {title}", f"{title.lower().replace(' ', '-')}.png", "PNG (*.png)"
            )
        if path:
            self.panels[title].grab().save(path)
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
        if name and (
            self.session.summary is None or name not in (self.session.summary.name, self.session.summary.source)
        ):
            self._load_model(name)

    def open_model_dialog(self):
        """File > Open model…: a model file or folder (musiclens.app.open_model); returns the dialog."""
        from musiclens.app.open_model import OpenModelDialog

        dialog = OpenModelDialog(self.session, self)
        dialog.opened.connect(lambda folder, trust: self.open_model_folder(folder, trust_code=trust))
        dialog.setAttribute(Qt.WA_DeleteOnClose)
        dialog.open()
        self.open_model = dialog  # the last one (tests drive it)
        return dialog

    def open_model_folder(self, folder: str, *, trust_code: bool = False) -> None:
        """Load a model folder; it joins the picker and the remembered folders once it loads
        (``trust_code``: the user ticked "Run the Python code", remembered with the folder)."""
        self._load_model(
            folder, then=lambda: self._add_model_folder(folder, trust_code=trust_code), trust_code=trust_code
        )

    def _add_model_folder(self, folder: str, *, trust_code: bool = False) -> None:
        """Remember a model folder and list it in the picker (newest first); ``trust_code``:
        its Python code runs again when it is picked (the user's choice in the Open dialog)."""
        folders = [f for f in settings_list("model_folders") if f != folder]
        settings().setValue("model_folders", [folder] + folders)
        if trust_code:
            trusted = [f for f in settings_list("trusted_model_folders") if f != folder]
            settings().setValue("trusted_model_folders", [folder] + trusted)
        if self.model_picker.findData(folder) < 0:
            self.model_picker.addItem(Path(folder).name, folder)

    def _load_model(self, name: str, *, then=None, trust_code: bool = False) -> None:
        """Load ``name`` on the Model > Device setting (remembered, to load it again elsewhere);
        its Python code runs when ``trust_code`` or when the user trusted the folder before."""
        self._asked = (name, then)
        if trust_code:  # asked again (on another device) before it loaded and was remembered
            self._trusted_now = name
        trusted = [*settings_list("trusted_model_folders"), getattr(self, "_trusted_now", None)]
        self.session.load_model(name, then=then, device=self.device, trust_code=bool(trust_code) or name in trusted)

    # ------------------------------------------------------------------ device
    def _build_device_menu(self, model_menu) -> None:
        from PySide6.QtGui import QActionGroup

        menu = model_menu.addMenu("&Device")
        menu.setToolTipsVisible(True)
        group = QActionGroup(self)
        group.setExclusive(True)
        self.device_actions: dict[str, QAction] = {}
        for word, text, tip in DEVICE_MENU:
            action = QAction(text, self)
            action.setCheckable(True)
            action.setData(word)
            action.setToolTip(tip)
            action.triggered.connect(lambda _checked=False, word=word: self.set_device(word))
            group.addAction(action)
            menu.addAction(action)
            self.device_actions[word] = action
        # greyed until PyTorch has loaded (with the first model) and says whether there is a GPU
        self.device_actions["cuda"].setEnabled(False)
        self.device_actions["cuda"].setToolTip("Looking for a CUDA GPU (once PyTorch has loaded)…")
        self._sync_device_menu()

    def _sync_device_menu(self) -> None:
        self.device_actions[self.device].setChecked(True)

    def set_device(self, word: str, *, save: bool = True) -> bool:
        """Model > Device: run the model on ``word`` (``"auto"``: the GPU when there is one,
        ``"cpu"``, ``"cuda"``); the loaded model is loaded again there and the setting is saved
        (``save``). Asking for CUDA where there is none says why and keeps the model and the
        setting as they are. Returns whether the device was taken."""
        word = str(word).strip().lower()
        if word not in DEVICE_NAMES:
            self.show_error(f"use the GPU: unknown device {word!r}; use auto, cpu or cuda")
            self._sync_device_menu()
            return False
        if word == "cuda":
            from musiclens.core.device import cuda_problem  # imports torch (loaded with the model)

            problem = cuda_problem()
            if problem is not None:
                where = self.device_label.text().strip().removeprefix("Device: ").rstrip("…")
                self.show_error(f"use the GPU: {problem}; the model stays where it is ({where})")
                self._sync_device_menu()
                return False
        if save:
            settings().setValue("device", word)
        if word == self.device:
            self._sync_device_menu()
            return True
        self._device_before, self.device = self.device, word
        self._sync_device_menu()
        summary = self.session.summary
        if summary is not None:
            self._load_model(summary.source or summary.name)
        elif self._asked is not None:  # the first load failed: try that model again here
            self._load_model(self._asked[0], then=self._asked[1])
        return True

    def _revert_device(self) -> None:
        """Loading on the new device failed: back to the setting before it (the model that was
        loaded stays loaded; with none, the asked-for model is loaded on the old setting)."""
        before, self._device_before = self._device_before, None
        if before is None or before == self.device:
            return
        failed, self.device = self.device, before
        if str(settings().value("device", "")).lower() == failed:  # saved: save the one that works
            settings().setValue("device", before)
        self._sync_device_menu()
        if self.session.summary is None and self._asked is not None:
            self._load_model(self._asked[0], then=self._asked[1])

    def _show_device(self) -> None:
        """A model has loaded (so torch is imported): the status bar names its device, and
        Model > Device offers CUDA only where there is a GPU."""
        from musiclens.app.about import device_info, short_device
        from musiclens.core.device import cuda_problem

        self._device_before = None
        info = device_info(self.session.model)
        name = short_device(info)
        self.device_label.setText(f" Device: {name} ")
        self.device_label.setToolTip(f"The model runs on the {name} (Model > Device: {DEVICE_NAMES[self.device]})")
        problem = cuda_problem()
        cuda = self.device_actions["cuda"]
        cuda.setEnabled(problem is None)
        cuda.setToolTip(
            f"Run the model on the GPU ({info.get('gpu')})" if problem is None else f"Not available: {problem}"
        )

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
        self.train_worker.shutdown(timeout_ms=30000)  # a cancelled run saves its best model first
        self.collector.stop()
        super().closeEvent(event)


def _mmss(seconds: float) -> str:
    m, s = divmod(max(0.0, seconds), 60)
    return f"{int(m):02d}:{s:04.1f}"
