"""Transfer learning: a trainable head on top of a frozen, pretrained MusiCNN ("probe").

One network, one :class:`~musiclens.core.models.registry.LoadedModel`: the MusiCNN modules
keep their names (``input_bn``, ``front_end``, ``mid_end``, ``back_end``) so every tool that
reads MusiCNN (hooks, Grad-CAM, filter auralisation, ``tagging.dense_matrix``, kernels)
reads the probe unchanged, and the head is ``head.*``. The saved folder holds the base's
weights too (self-contained); the provenance names the base model and its licence.

Representations the head reads (``features``), per patch ``x: (B, 1, 96, T)``:

=============  =====  =========================================================
features       D      what
=============  =====  =========================================================
``tags``        50    the base's tag logits (pre-sigmoid ``back_end.output``)
``pooled``     1506   max and mean over time of the mid-end matrix W, interleaved
                      (``back_end.pool``, before the back end's batch norm)
``penultimate`` 200   dense + ReLU + batch norm (musicnn's "penultimate")
=============  =====  =========================================================

The head: ``head.scale`` standardises the D features with the training set's mean and std
(buffers, saved with the weights), then a linear layer (``head="linear"``: multinomial
logistic regression / one-vs-rest for multi-label) or ``Linear -> ReLU -> Linear``
(``head="mlp"``, ``hidden`` units). Training (:mod:`musiclens.core.training.probe`) fits it on
cached features with an L2 penalty ``l2/2 · Σ W²`` chosen by grouped cross-validation.

Frozen means frozen: every base parameter has ``requires_grad=False`` and the base's
batch norms stay in eval mode even when the net is put in training mode, so training never
changes a base tensor. ``finetune=k`` unfreezes the k topmost base blocks below the chosen
representation (:data:`FINETUNE_BLOCKS`); their batch-norm statistics still stay frozen.
"""

from __future__ import annotations

import hashlib
from typing import Any, cast

import torch
from torch import nn

from musiclens.core.errors import ParameterError
from musiclens.core.features import FrontEnd
from musiclens.core.models.musicnn import (
    MusicnnBackEnd,
    MusicnnFrontEnd,
    MusicnnMidEnd,
    musicnn_layers,
)
from musiclens.core.models.registry import LayerInfo, LoadedModel, register_family

FEATURES = ("tags", "pooled", "penultimate")
HEADS = ("linear", "mlp")
BASES = ("MSD_musicnn", "MTT_musicnn")
BASE_MODULES = ("input_bn", "front_end", "mid_end", "back_end")
#: Base blocks that fine-tuning may unfreeze, topmost first; a representation can only
#: fine-tune the blocks below it (``tags``: all, ``penultimate``: from the dense layer,
#: ``pooled``: from mid-end conv 3).
FINETUNE_BLOCKS: tuple[tuple[str, ...], ...] = (
    ("back_end.output",),
    ("back_end.bn_pool", "back_end.dense", "back_end.bn_dense"),
    ("mid_end.layer3",),
    ("mid_end.layer2",),
    ("mid_end.layer1",),
)
_FIRST_BLOCK = {"tags": 0, "penultimate": 1, "pooled": 2}


def finetune_blocks(features: str) -> tuple[tuple[str, ...], ...]:
    """The base blocks ``features`` can fine-tune, topmost first."""
    return FINETUNE_BLOCKS[_FIRST_BLOCK[features] :]


class FeatureStandardise(nn.Module):
    """``(h - mean) / std`` per feature, statistics as buffers. (B, D) -> (B, D)."""

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, n: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return (h - self.mean) / self.std

    @torch.no_grad()
    def fit(self, h: torch.Tensor) -> None:
        """Set mean and std from features ``h`` (N, D). The std is floored at 1e-3 × the mean
        std over features (and 1e-6): a feature (nearly) constant on the training patches
        (e.g. a unit the ReLU switched off) must not blow up when it moves on new audio."""
        h = torch.as_tensor(h, dtype=torch.float64)
        std = h.std(0, unbiased=False)
        floor = max(1e-6, 1e-3 * float(std.mean())) if std.numel() else 1e-6
        self.mean.copy_(h.mean(0).to(self.mean))
        self.std.copy_(std.clamp_min(floor).to(self.std))


class ProbeHead(nn.Module):
    """Standardise -> Linear (``linear``) or Linear -> ReLU -> Linear (``mlp``). (B, D) -> (B, L)."""

    def __init__(self, in_features: int, n_labels: int, kind: str = "linear", hidden: int = 64) -> None:
        super().__init__()
        self.kind = kind
        self.scale = FeatureStandardise(in_features)
        if kind == "mlp":
            self.hidden = nn.Linear(in_features, hidden)
            self.relu = nn.ReLU()
            self.output = nn.Linear(hidden, n_labels)
        else:
            self.output = nn.Linear(in_features, n_labels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = self.scale(h)
        if self.kind == "mlp":
            z = self.relu(self.hidden(z))
        out: torch.Tensor = self.output(z)
        return out

    def weights(self) -> list[torch.Tensor]:
        """The penalised weight matrices (biases are not penalised)."""
        return [self.hidden.weight, self.output.weight] if self.kind == "mlp" else [self.output.weight]

    def reset(self, seed: int = 0) -> None:
        """Re-initialise: the MLP's hidden layer with torch's default init (seeded), the output
        layer with zeros (the logistic head's convex problem then starts at the uniform
        prediction, and a feature constant on the training data keeps a weight of exactly 0)."""
        gen_state = torch.random.get_rng_state()
        try:
            torch.manual_seed(int(seed))
            if self.kind == "mlp":
                self.hidden.reset_parameters()
        finally:
            torch.random.set_rng_state(gen_state)
        with torch.no_grad():
            self.output.weight.zero_()
            self.output.bias.zero_()


class MusicnnProbe(nn.Module):
    """Frozen MusiCNN + head. (B, 1, n_mels, T) -> logits (B, n_labels).

    ``l2`` (attribute, not saved) is the head's L2 strength used by :meth:`regularisation`,
    which the training loop adds to the loss.
    """

    def __init__(
        self,
        *,
        features: str = "penultimate",
        head: str = "linear",
        hidden: int = 64,
        n_labels: int = 2,
        n_mels: int = 96,
        base_labels: int = 50,
        timbral_filters: int = 204,
        temporal_filters: int = 51,
        midend_filters: int = 64,
        backend_units: int = 200,
    ) -> None:
        super().__init__()
        if features not in FEATURES:
            raise ParameterError(f"features must be one of {', '.join(FEATURES)}, got {features!r}")
        if head not in HEADS:
            raise ParameterError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        if head == "mlp" and int(hidden) < 1:
            raise ParameterError(f"the MLP head needs at least one hidden unit, got {hidden}")
        self.features = features
        self.input_bn = nn.BatchNorm2d(1, eps=1e-3)
        self.front_end = MusicnnFrontEnd(n_mels, timbral_filters, temporal_filters)
        front = 2 * timbral_filters + 3 * temporal_filters
        self.mid_end = MusicnnMidEnd(front, midend_filters)
        rows = front + 3 * midend_filters
        self.back_end = MusicnnBackEnd(rows, backend_units, base_labels)
        self.dims = {"pooled": 2 * rows, "penultimate": backend_units, "tags": base_labels}
        self.head = ProbeHead(self.dims[features], n_labels, head, hidden)
        self.l2 = 0.0
        self.finetune = 0
        self.freeze(0)

    # ------------------------------------------------------------------ forward
    def _w(self, x: torch.Tensor) -> torch.Tensor:
        w: torch.Tensor = self.mid_end(self.front_end(self.input_bn(x)))
        return w

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """The chosen frozen representation, (B, D)."""
        return self._from_w(self._w(x), self.features)

    def _from_w(self, w: torch.Tensor, features: str) -> torch.Tensor:
        be = self.back_end
        pooled: torch.Tensor = be.pool(w)
        if features == "pooled":
            return pooled
        pen: torch.Tensor = be.bn_dense(be.relu(be.dense(be.bn_pool(pooled))))
        if features == "penultimate":
            return pen
        tags: torch.Tensor = be.output(pen)
        return tags

    @torch.no_grad()
    def all_representations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every representation of one forward pass: {"pooled": (B, 1506), "penultimate": (B, 200),
        "tags": (B, 50)} (what the feature cache stores)."""
        be = self.back_end
        pooled = be.pool(self._w(x))
        pen = be.bn_dense(be.relu(be.dense(be.bn_pool(pooled))))
        return {"pooled": pooled, "penultimate": pen, "tags": be.output(pen)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.representation(x))
        return out

    # ------------------------------------------------------------------ training
    def freeze(self, finetune: int = 0) -> None:
        """Freeze the base except its ``finetune`` topmost blocks below the representation."""
        blocks = finetune_blocks(self.features)
        if not 0 <= int(finetune) <= len(blocks):
            raise ParameterError(
                f"finetune must be between 0 and {len(blocks)} for features={self.features!r} "
                f"(blocks below it, topmost first: {', '.join('+'.join(b) for b in blocks)}), got {finetune}"
            )
        self.finetune = int(finetune)
        for name in BASE_MODULES:
            for p in getattr(self, name).parameters():
                p.requires_grad_(False)
        for block in blocks[: self.finetune]:
            for path in block:
                for p in self.get_submodule(path).parameters():
                    p.requires_grad_(True)
        for p in self.head.parameters():
            p.requires_grad_(True)

    def train(self, mode: bool = True) -> MusicnnProbe:
        super().train(mode)
        for name in BASE_MODULES:  # the base's batch norms and fast paths stay in eval mode
            getattr(self, name).eval()
        return self

    def regularisation(self) -> torch.Tensor:
        """``l2 / 2 · Σ W²`` over the head's weight matrices (added to the loss by ``train``)."""
        weights = self.head.weights()
        total = weights[0].pow(2).sum()  # as sum() but typed: 0 + the first term is that term
        for w in weights[1:]:
            total = total + w.pow(2).sum()
        return 0.5 * self.l2 * total

    def base_digest(self) -> str:
        """SHA-256 of the base's tensors (names, shapes and bytes): the cache key of features."""
        h = hashlib.sha256()
        for k, v in sorted(self.state_dict().items()):
            if k.startswith("head."):
                continue
            t = v.detach().cpu().contiguous()
            h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()


def probe_layers(
    features: str, head: str, hidden: int, n_labels: int, dims: dict[str, int], base_labels: int, **base: Any
) -> list[LayerInfo]:
    """MusiCNN's readable layers that run for ``features``, then the head's."""
    last = {"pooled": "back_end.pool", "penultimate": "back_end.bn_dense", "tags": "back_end.output"}
    layers: list[LayerInfo] = []
    for info in musicnn_layers(n_labels=base_labels, **base):
        if info.name == "output":  # the base's tag logits are an inner layer here
            info = LayerInfo(
                "back end / tag logits", info.module, "back end", "dense", f"the base model's {info.description}"
            )
        layers.append(info)
        if info.module == last[features]:
            break
    d = dims[features]
    layers.append(
        LayerInfo(
            "probe / standardised features",
            "head.scale",
            "probe",
            "dense",
            f"the {features} representation ({d},) minus the training mean, over the training std",
        )
    )
    if head == "mlp":
        layers.append(
            LayerInfo("probe / hidden", "head.hidden", "probe", "dense", f"{hidden} units (pre-ReLU), ({hidden},)")
        )
    layers.append(LayerInfo("output", "head.output", "output", "output", f"logits ({n_labels},) of the new classes"))
    return layers


@register_family("musicnn_probe")
def build_probe(
    *,
    features: str = "penultimate",
    head: str = "linear",
    hidden: int = 64,
    n_labels: int = 2,
    n_mels: int = 96,
    base_labels: int = 50,
    timbral_filters: int = 204,
    temporal_filters: int = 51,
    midend_filters: int = 64,
    backend_units: int = 200,
) -> tuple[nn.Module, list[LayerInfo]]:
    base = dict(
        n_mels=n_mels,
        timbral_filters=timbral_filters,
        temporal_filters=temporal_filters,
        midend_filters=midend_filters,
        backend_units=backend_units,
    )
    net = MusicnnProbe(features=features, head=head, hidden=hidden, n_labels=n_labels, base_labels=base_labels, **base)
    layers = probe_layers(features, head, hidden, n_labels, net.dims, base_labels, **base)
    return net.eval(), layers


_LICENCE_KEYS = ("description", "source", "licence", "licence_file", "copyright", "paper", "wheel", "wheel_sha256")


def create_probe(
    labels: list[str],
    *,
    base: str = "MSD_musicnn",
    features: str = "penultimate",
    head: str = "linear",
    hidden: int = 64,
    finetune: int = 0,
    multilabel: bool = False,
    patch_seconds: float | None = None,
    model_name: str | None = None,
    front_end: FrontEnd | None = None,
) -> LoadedModel:
    """A probe for ``labels`` on the pretrained ``base`` (bundled name or a musicnn folder).

    The head is untrained (standardisation = identity); the base holds the pretrained
    weights, frozen except ``finetune`` blocks. ``patch_seconds`` overrides the base's
    187-frame patch (MusiCNN pools over time, so any length >= 1 frame works)."""
    from musiclens.core.models import registry

    if features not in FEATURES:
        raise ParameterError(f"features must be one of {', '.join(FEATURES)}, got {features!r}")
    if head not in HEADS:
        raise ParameterError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    b = registry.load(base)
    if b.architecture.get("family") != "musicnn":
        raise ParameterError(
            f"the base of a probe must be a MusiCNN model ({', '.join(BASES)}), "
            f"not {b.name!r} (family {b.architecture.get('family')!r})"
        )
    if front_end is not None and front_end != b.front_end:
        raise ParameterError("a probe takes its base model's front end (MusiCNN's log-mel); don't override front_end")
    bp = dict(b.architecture.get("params", {}))
    params = {
        "features": features,
        "head": head,
        "hidden": int(hidden),
        "n_labels": len(labels),
        "n_mels": bp.get("n_mels", 96),
        "base_labels": bp.get("n_labels", len(b.labels)),
        "timbral_filters": bp.get("timbral_filters", 204),
        "temporal_filters": bp.get("temporal_filters", 51),
        "midend_filters": bp.get("midend_filters", 64),
        "backend_units": bp.get("backend_units", 200),
    }
    if head == "linear":
        params.pop("hidden")
    architecture = {"family": "musicnn_probe", "params": params}
    built, layers = registry.build(architecture)
    net = cast(MusicnnProbe, built)  # the musicnn_probe family builds a MusicnnProbe
    state = net.state_dict()
    base_state = b.net.state_dict()
    if set(base_state) != {k for k in state if not k.startswith("head.")}:
        raise ParameterError(f"{b.name}'s tensors don't match a MusiCNN probe's base")
    with torch.no_grad():
        for k, v in base_state.items():
            state[k].copy_(v)
    net.freeze(finetune)
    net.eval()
    if patch_seconds is None:
        patch_frames = b.patch_frames
    else:
        patch_frames = b.front_end.seconds_to_frames(patch_seconds)
    provenance = {
        "arch": "musicnn-probe",
        "description": f"{head} head on {b.name}'s frozen {features} representation",
        "trained": False,
        "base": {
            "name": b.name,
            "source_folder": str(b.source) if b.source else None,
            "weights_sha256": net.base_digest(),
            **{k: b.provenance[k] for k in _LICENCE_KEYS if k in b.provenance},
        },
        "probe": {
            "features": features,
            "head": head,
            "hidden": int(hidden) if head == "mlp" else None,
            "finetune": int(finetune),
            "finetune_blocks": ["+".join(blk) for blk in finetune_blocks(features)[: int(finetune)]],
        },
    }
    return LoadedModel(
        name=model_name or f"{b.name}-probe-{features}",
        net=net,
        front_end=b.front_end,
        labels=list(labels),
        patch_frames=int(patch_frames),
        multilabel=bool(multilabel),
        layers={layer.name: layer for layer in layers},
        architecture=architecture,
        provenance=provenance,
    )
