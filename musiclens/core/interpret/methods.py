"""The method table: every interpretation method declared once.

The window's method list, the CLI's ``cam`` / ``saliency`` / ``sanity`` choices and the
sanity check (:mod:`musiclens.core.interpret.sanity`) all read :data:`METHODS`; nothing
else lists method names. Adding a method is one module with a function in the calling
convention below, one :class:`Method` entry here, and its test
(:mod:`musiclens.core.interpret.grad_x_input` is the worked example).

Calling convention (every ``Method.function``)::

    fn(model, x, *, target, layer=None, **options) -> Tensor

* audio: ``x`` is the front-end output (B, C, F, T); an input-resolution method returns
  (B, C, F, T), a layer method (``needs_layer``) returns (B, F_l, T_l) at the layer's
  resolution (bring it to the spectrogram with :func:`musiclens.core.interpret.maps.upsample`).
* MIDI: ``x`` is raw note features (B, N, 3) = [pitch, step (s), duration (s)] and the
  option ``mask`` (B, N) marks the real notes; the result is (B, N, 3), 0 on padded notes.
* ``target``: a label index or name, a set of labels attributed at once (``{"a", "b"}`` or
  ``"a+b"``: the sum of their scores, for multi-label models), or a list with one such
  target per batch item. Captum's methods get a forward returning each item's target score
  (:mod:`musiclens.core.interpret.captum_methods`) and ``target=None``.
* waveform: ``x`` is raw samples (B, 1, S); the result has x's shape.
* The sign is always kept (``signed`` says whether the map can be negative at all);
  clipping (``relu=True`` where offered), magnitudes and upsampling are the caller's.
* ``options`` are the function's own keyword parameters (:attr:`Method.options`); a method
  that reports diagnostics takes ``info``, a dict it fills (Integrated Gradients:
  ``score_at_input``, ``score_at_baseline``, ``completeness_error``, ``relative_error``,
  each (B,), and ``steps``).

Names: each method has one canonical name (the CLI spelling, e.g. ``"grad-cam"``) and
accepts older spellings as aliases (``gradcam``, ``grad_cam``); :func:`get` resolves both
and raises one :class:`~musiclens.core.errors.ParameterError` listing the names allowed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from musiclens.core.errors import MusicLensError, ParameterError
from musiclens.core.interpret.grad_x_input import gradient_x_input

if TYPE_CHECKING:  # the table itself imports without torch (the CLI builds its parser from it)
    import torch

    from musiclens.core.interpret._common import Target
    from musiclens.core.interpret.midi_saliency import Output

#: what a model reads: a spectrogram front end, MIDI note features, or raw samples
INPUT_KINDS = ("audio", "midi", "waveform")

ShownAs = Literal["signed", "relu", "abs"]


def input_kind(model: Any) -> str:
    """``"audio"``, ``"midi"`` or ``"waveform"``: the kind of input ``model`` reads."""
    value = getattr(model, "kind", None)  # LoadedModel.kind
    if isinstance(value, str) and value in INPUT_KINDS:
        return value
    for attr, kind in (("front_end", "audio"), ("spec", "midi")):  # older model objects
        try:
            if getattr(model, attr, None) is not None:
                return kind
        except MusicLensError:  # a property that refuses another kind
            continue
    return "waveform"


@dataclass(frozen=True)
class Method:
    """One interpretation method.

    name : the canonical name (CLI spelling), e.g. ``"grad-cam"``.
    label : what the window shows, e.g. ``"Grad-CAM"``.
    implementation : ``fn(model, x, *, target, layer=None, **options) -> Tensor`` (module
        docstring), or ``"module.function"`` in :mod:`musiclens.core.interpret` (imported when
        the method is used, so that the table reads without torch); :attr:`function` is it.
    needs_layer : the map is computed at a layer (and has the layer's resolution).
    signed : the map can be negative (with its default options).
    input_kinds : the input kinds it works on (a subset of :data:`INPUT_KINDS`).
    description : one sentence for tooltips and ``--help``.
    aliases : older or shorter spellings that :func:`get` accepts.
    shown_as : how the window shows it by default: ``"signed"`` (blue–red around 0),
        ``"relu"`` (the positive part) or ``"abs"`` (the magnitude, max over channels).
    quick : options for interactive use (the window), where the defaults are slow.
    needs_net : an attribute the model's network must have (e.g. ``"presence_saliency"``:
        whole-piece MIDI models only); None: every model of its input kinds.
    """

    name: str
    label: str
    implementation: Callable[..., torch.Tensor] | str
    needs_layer: bool
    signed: bool
    input_kinds: tuple[str, ...]
    description: str
    aliases: tuple[str, ...] = ()
    shown_as: ShownAs = "signed"
    quick: tuple[tuple[str, Any], ...] = ()
    needs_net: str | None = None

    def works_on(self, model: Any) -> bool:
        """Whether this method runs on ``model`` (a LoadedModel): its input kind is one of
        :attr:`input_kinds` and its network has :attr:`needs_net` where one is named."""
        kind = getattr(model, "kind", None)
        if kind is not None and kind not in self.input_kinds:
            return False
        return self.needs_net is None or hasattr(getattr(model, "net", model), self.needs_net)

    @property
    def function(self) -> Callable[..., torch.Tensor]:
        """The method's function (a ``"module.function"`` reference imported now)."""
        if callable(self.implementation):
            return self.implementation
        import importlib

        module, name = self.implementation.rsplit(".", 1)
        fn: Callable[..., torch.Tensor] = getattr(importlib.import_module(f"musiclens.core.interpret.{module}"), name)
        return fn

    @property
    def resolution(self) -> str:
        """``"layer"`` (a layer method's map) or ``"input"`` (the input's shape)."""
        return "layer" if self.needs_layer else "input"

    @property
    def options(self) -> tuple[str, ...]:
        """The keyword options ``function`` takes besides ``target`` and ``layer``."""
        params = inspect.signature(self.function).parameters.values()
        return tuple(
            p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in ("target", "layer")
        )

    def supports(self, kind: str) -> bool:
        return kind in self.input_kinds

    def supported(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The part of ``options`` this method takes (a caller can offer every option it has)."""
        own = self.options
        return {k: v for k, v in options.items() if k in own}

    def __call__(
        self,
        model: Any,
        x: torch.Tensor,
        *,
        target: Target | Sequence[Target],
        layer: str | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """Run the method after checking the layer, the input kind and the options."""
        if self.needs_layer and layer is None:
            raise ParameterError(f"{self.name} needs a layer")
        kind = input_kind(model)
        if kind not in self.input_kinds:
            raise ParameterError(
                f"{self.name} works on {', '.join(self.input_kinds)} models, "
                f"not on a {kind} model; for {kind}: {', '.join(names(kind=kind)) or 'none'}"
            )
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ParameterError(
                f"{self.name} has no option {', '.join(unknown)}; its options: {', '.join(self.options) or 'none'}"
            )
        return self.function(model, x, target=target, layer=layer if self.needs_layer else None, **options)

    def input_map(self, result: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
        """An audio result -> one (B, F, T) map over the spectrogram for drawing: a layer map
        upsampled to ``size``; an input map reduced over channels (the max of the magnitude
        when ``shown_as == "abs"``, else the signed sum)."""
        if self.needs_layer:
            from musiclens.core.interpret.maps import upsample

            return upsample(result, size)
        if self.shown_as == "abs":
            return result.abs().amax(dim=1)
        return result.sum(dim=1)

    @property
    def shown_signed(self) -> bool:
        """Whether the window's map (see :meth:`input_map`) keeps a sign."""
        return self.signed and self.shown_as != "abs"


# ------------------------------------------------------------------ the functions
# The verbs of captum_methods.py already follow the convention: the table names them as
# "captum_methods.<verb>" (imported when used). The wrappers below bring cam.py (CAM,
# Grad-CAM++: ours, Captum has neither) and the IG diagnostics to it (imported when called,
# so that reading the table needs neither torch nor Captum).


def _layer(name: str, layer: str | None) -> str:
    if layer is None:  # Method.__call__ checks first; a direct call of the wrapper may not
        raise ParameterError(f"{name} needs a layer")
    return layer


def _cam_fn(
    m: Any,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    relu: bool = False,
    classifier: str | None = None,
) -> torch.Tensor:
    from musiclens.core.interpret import cam as _cam

    return _cam.cam(m, x, target=target, layer=_layer("cam", layer), relu=relu, classifier=classifier)


def _grad_cam_fn(
    m: Any,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    relu: bool = False,
    output: str = "logit",
) -> torch.Tensor:
    from musiclens.core.interpret import cam as _cam

    return _cam.grad_cam(m, x, target=target, layer=_layer("grad-cam", layer), relu=relu, output=output)


def _grad_cam_pp_fn(
    m: Any,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    relu: bool = False,
    output: str = "logit",
) -> torch.Tensor:
    from musiclens.core.interpret import cam as _cam

    return _cam.grad_cam_pp(m, x, target=target, layer=_layer("grad-cam++", layer), relu=relu, output=output)


def _integrated_gradients_fn(
    m: Any,
    x: torch.Tensor,
    *,
    target: Target | Sequence[Target],
    layer: str | None = None,
    baseline: Any = None,
    steps: int | None = None,
    output: Output = "logit",
    mask: torch.Tensor | None = None,
    info: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Default baseline and steps per kind: audio silence, waveform zeros, 32 points
    (Captum, Gauss–Legendre); MIDI the average note and a budget of 256 gradient
    evaluations (adaptive)."""
    from musiclens.core.interpret import captum_methods as _c

    midi = input_kind(m) == "midi"
    used = (256 if midi else 32) if steps is None else steps
    r = _c.integrated_gradients(
        m, x, target=target, baseline=baseline, steps=used, output=output, mask=mask, adaptive=midi
    )
    if info is not None:
        info.update(
            score_at_input=r.score,
            score_at_baseline=r.baseline_score,
            completeness_error=r.completeness_error,
            relative_error=r.relative_error,
            steps=used,
        )
    return r.attributions


# ------------------------------------------------------------------ the table

#: every method, in the order the window lists them
METHODS: tuple[Method, ...] = (
    Method(
        "grad-cam",
        "Grad-CAM",
        _grad_cam_fn,
        needs_layer=True,
        signed=True,
        input_kinds=("audio",),
        description="gradient-weighted class activation map of a layer (Selvaraju et al. 2017)",
        aliases=("gradcam", "grad_cam"),
        shown_as="relu",
    ),
    Method(
        "grad-cam++",
        "Grad-CAM++",
        _grad_cam_pp_fn,
        needs_layer=True,
        signed=True,
        input_kinds=("audio",),
        description="Grad-CAM with pixel-wise weights of the gradients (Chattopadhyay et al. 2018)",
        aliases=("gradcam++", "grad_cam_pp"),
        shown_as="relu",
    ),
    Method(
        "cam",
        "CAM",
        _cam_fn,
        needs_layer=True,
        signed=True,
        input_kinds=("audio",),
        description="exact class activation map of a global-average-pooling model, at the pooled "
        "layer (Zhou et al. 2016)",
        shown_as="relu",
    ),
    Method(
        "gradient",
        "Gradient (saliency)",
        "captum_methods.gradient",
        needs_layer=False,
        signed=True,
        input_kinds=("audio", "midi", "waveform"),
        description="gradient of the class score with respect to the input (Simonyan et al. 2014)",
        aliases=("grad",),
        shown_as="abs",
    ),
    Method(
        "gradient-x-input",
        "Gradient × input",
        gradient_x_input,
        needs_layer=False,
        signed=True,
        input_kinds=("audio", "midi", "waveform"),
        description="the input times its gradient: each value's contribution to the score (Shrikumar et al. 2016)",
        aliases=("grad-x-input", "gradient_x_input"),
        shown_as="signed",
    ),
    Method(
        "smoothgrad",
        "SmoothGrad",
        "captum_methods.smoothgrad",
        needs_layer=False,
        signed=True,
        input_kinds=("audio", "waveform"),
        description="mean gradient over noisy copies of the input (Smilkov et al. 2017)",
        shown_as="abs",
        quick=(("n_samples", 16),),
    ),
    Method(
        "integrated-gradients",
        "Integrated Gradients",
        _integrated_gradients_fn,
        needs_layer=False,
        signed=True,
        input_kinds=("audio", "midi", "waveform"),
        description="gradients integrated from a baseline (silence) to the input; they sum to the "
        "score difference (Sundararajan et al. 2017)",
        aliases=("ig", "integrated_gradients"),
        shown_as="signed",
        quick=(("steps", 24),),
    ),
    Method(
        "gradient-shap",
        "GradientSHAP",
        "captum_methods.gradient_shap",
        needs_layer=False,
        signed=True,
        input_kinds=("audio", "waveform"),
        description="expected gradients × (input − baseline) at random points between the input and "
        "silence or its steady spectrum (Lundberg & Lee 2017)",
        aliases=("gradientshap", "gradient_shap", "shap"),
        shown_as="signed",
        quick=(("n_samples", 8),),
    ),
    Method(
        "deeplift",
        "DeepLIFT",
        "captum_methods.deeplift",
        needs_layer=False,
        signed=True,
        input_kinds=("audio", "waveform"),
        description="contributions relative to silence propagated with the Rescale rule (Shrikumar et al. 2017)",
        aliases=("deep-lift", "deep_lift"),
        shown_as="signed",
    ),
    Method(
        "occlusion",
        "Occlusion",
        "captum_methods.occlusion",
        needs_layer=False,
        signed=True,
        input_kinds=("audio", "waveform"),
        description="the score drop when a cell of frames × bins is replaced by silence (Zeiler & Fergus 2014)",
        shown_as="signed",
        quick=(("frames", 16), ("bins", 16)),
    ),
    Method(
        "feature-ablation",
        "Feature ablation",
        "captum_methods.feature_ablation",
        needs_layer=False,
        signed=True,
        input_kinds=("audio", "midi", "waveform"),
        description="the score drop when one time-frequency cell (audio) or one note (MIDI) is "
        "replaced by the baseline",
        aliases=("ablation", "feature_ablation"),
        shown_as="signed",
        quick=(("frames", 16), ("bins", 16)),
    ),
    Method(
        "note-presence",
        "Note presence (deletion estimate)",
        "note_presence.note_presence",
        needs_layer=False,
        signed=True,
        input_kinds=("midi",),
        description="the gradient of the score with respect to each note's presence: the first-order "
        "effect of deleting it (whole-piece MIDI models)",
        aliases=("presence", "note_presence"),
        shown_as="signed",
        needs_net="presence_saliency",
    ),
    Method(
        "guided-backprop",
        "Guided backprop",
        "captum_methods.guided_backprop",
        needs_layer=False,
        signed=True,
        input_kinds=("audio", "waveform"),
        description="the gradient passing only positive gradients back through ReLUs (Springenberg et al. 2015)",
        aliases=("guided_backprop", "guided-backpropagation"),
        shown_as="abs",
    ),
    Method(
        "deconvolution",
        "Deconvolution",
        "captum_methods.deconvolution",
        needs_layer=False,
        signed=True,
        input_kinds=("audio", "waveform"),
        description="the gradient with ReLUs applied to the gradient itself (Zeiler & Fergus 2014)",
        aliases=("deconvnet",),
        shown_as="abs",
    ),
    Method(
        "lrp",
        "LRP",
        "captum_methods.lrp",
        needs_layer=False,
        signed=True,
        input_kinds=("audio", "waveform"),
        description="layer-wise relevance propagation, epsilon rule (Bach et al. 2015); only for nets of "
        "2-D convolutions, linear, pooling, batch-norm-2-D and ReLU layers (not MusiCNN)",
        aliases=("layer-wise-relevance",),
        shown_as="signed",
    ),
)


def _key(name: str) -> str:
    return str(name).strip().lower()


def _index() -> dict[str, Method]:
    out: dict[str, Method] = {}
    for m in METHODS:
        for n in (m.name,) + m.aliases:
            if _key(n) in out:
                raise AssertionError(f"method name {n!r} is declared twice")  # a table error
            out[_key(n)] = m
    return out


_BY_NAME = _index()


def names(*, kind: str | None = None, needs_layer: bool | None = None, model: Any = None) -> list[str]:
    """Canonical names in table order, optionally only those for an input kind and/or
    with (or without) a layer, and/or that work on ``model``."""
    return [m.name for m in select(kind=kind, needs_layer=needs_layer, model=model)]


def select(*, kind: str | None = None, needs_layer: bool | None = None, model: Any = None) -> list[Method]:
    """The table's methods for an input kind and/or with (or without) a layer, and/or that
    work on ``model`` (:meth:`Method.works_on`), in order."""
    if kind is not None and kind not in INPUT_KINDS:
        raise ParameterError(f"input kind {kind!r} is unknown; allowed: {', '.join(INPUT_KINDS)}")
    return [
        m
        for m in METHODS
        if (kind is None or kind in m.input_kinds)
        and (needs_layer is None or m.needs_layer == needs_layer)
        and (model is None or m.works_on(model))
    ]


def get(name: str | Method, *, among: Iterable[str] | None = None) -> Method:
    """The method called ``name`` (canonical or an alias, any case).

    ``among``: the canonical names allowed here (e.g. the ``cam`` command's); others raise
    too. Raises :class:`ParameterError` saying what is allowed.
    """
    if isinstance(name, Method):
        return name
    allowed = list(among) if among is not None else [m.name for m in METHODS]
    m = find(name)
    if m is None or m.name not in allowed:
        olds = [a for x in METHODS if x.name in allowed for a in x.aliases]
        what = f"unknown method {name!r}" if m is None else f"method {name!r} cannot be used here"
        raise ParameterError(
            f"{what}; choose one of {', '.join(allowed)}"
            + (f" (old spellings accepted: {', '.join(olds)})" if olds else "")
        )
    return m


def find(name: str) -> Method | None:
    """The method called ``name`` (canonical or an alias), or None."""
    return _BY_NAME.get(_key(name)) or _BY_NAME.get(_key(name).replace("_", "-"))


def canonical(name: str) -> str:
    """The canonical spelling of a method name (``"gradcam"`` -> ``"grad-cam"``)."""
    return get(name).name


def label(name: str) -> str:
    """The window's label of a method, or ``name`` itself when it is not in the table."""
    m = find(name)
    return m.label if m is not None else name
