"""The measurement parts of an evaluation (``evaluate.py``): each sees every test batch through one shared encoder
pass and decode (``TestBatch``), and holds its torchmetrics by source name (``sources.py``).

- ``ModelPart``: the model's boundary metrics (with ``nsd@τ`` and ``bf1@τ``) and per-object metrics;
- ``AblationPart``: the test-time ablation of every non-empty subset of the kept skips, decoded from the shared
  encoder pass (``decode_variants``); the Shapley values are computed from its per-image values afterwards;
- ``ProbePart``: the depth probes (fit before the test pass on frozen training features), metrics and objects;
- ``FloorPart``: the resolution floors of the test masks (computed once per set of masks and level, ``floors.py``).

A part's ``update`` runs per batch, ``finish`` once after the last; both may record label maps for the report's
pictures (``LabelMapRecorder``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from unetlab import sources
from unetlab.evaluation.ablations import decode_variants
from unetlab.evaluation.floors import cached_floor
from unetlab.metrics import BoundaryMetrics, ObjectMetrics
from unetlab.models import protocol
from unetlab.models.protocol import UNetLike
from unetlab.runs.label_maps import LabelMapRecorder


@dataclass
class TestBatch:
    """One test batch and the model's pass over it, shared by every part: ``images`` (B, C, H, W), ``masks``
    (B, H, W), ``encoded`` [enc0..encD], ``decoded`` {dec{D-1}..dec0, logits}."""

    images: Tensor
    masks: Tensor
    encoded: list[Tensor]
    decoded: dict[str, Tensor]

    @classmethod
    def of(cls, net: UNetLike, images: Tensor, masks: Tensor) -> TestBatch:
        encoded = protocol.encode(net, images)
        return cls(images, masks, encoded, protocol.decode(net, encoded))

    @property
    def features(self) -> dict[str, Tensor]:
        """Every feature map by key: enc0..encD, dec{D-1}..dec0, logits."""
        return protocol.feature_maps(self.encoded, self.decoded)


class Part:
    """A measurement over the test split: ``boundary`` and ``objects`` map its source names to its metrics."""

    done = ""  # what the phase line says once the part has finished (empty: nothing to say)

    def __init__(self) -> None:
        self.boundary: dict[str, BoundaryMetrics] = {}
        self.objects: dict[str, ObjectMetrics] = {}

    def update(self, batch: TestBatch, labels: LabelMapRecorder | None) -> None:
        """Score one test batch."""

    def finish(self, labels: LabelMapRecorder | None) -> None:
        """Once, after the last batch."""

    def score(self, source: str, predicted: Tensor, masks: Tensor, labels: LabelMapRecorder | None) -> None:
        """Update ``source``'s metrics with the label map ``predicted`` (B, H, W), and record it for the pictures."""
        self.boundary[source].update(predicted, masks)
        if source in self.objects:
            self.objects[source].update(predicted.cpu(), masks.cpu())
        if labels is not None:
            labels.add(source, predicted)


class ModelPart(Part):
    """The model's own metrics (``model``), its tolerance sweep and per-object metrics; records the test images and
    their ground truth for the pictures."""

    def __init__(self, boundary: BoundaryMetrics, objects: ObjectMetrics | None):
        super().__init__()
        self.boundary[sources.MODEL] = boundary
        if objects is not None:
            self.objects[sources.MODEL] = objects

    def update(self, batch: TestBatch, labels: LabelMapRecorder | None) -> None:
        if labels is not None:
            labels.add_images(batch.images)
            labels.add("truth", batch.masks)
        self.score(sources.MODEL, protocol.labels(batch.decoded["logits"]), batch.masks, labels)


class AblationPart(Part):
    """``ablate/<mode>/<levels>``: every variant ({level: mode}) decoded from the batch's shared encoder pass."""

    def __init__(
        self, net: UNetLike, ablations: Mapping[str, Mapping[int, str]], new_metric: Callable[[], BoundaryMetrics]
    ):
        super().__init__()
        self.net, self.ablations = net, dict(ablations)
        self.boundary = {source: new_metric() for source in self.ablations}

    def update(self, batch: TestBatch, labels: LabelMapRecorder | None) -> None:
        for source, logits in decode_variants(self.net, batch.encoded, self.ablations, intact=batch.decoded).items():
            self.boundary[source].update(protocol.labels(logits), batch.masks)


class ProbePart(Part):
    """``probe/<key>``: each fitted probe read out on the batch's frozen features; per-object metrics beside them
    (found vs placed, layer by layer)."""

    def __init__(
        self,
        probes: nn.ModuleDict,
        new_metric: Callable[[], BoundaryMetrics],
        new_objects: Callable[[], ObjectMetrics] | None,
    ):
        super().__init__()
        self.probes = probes
        self.boundary = {sources.probe(key): new_metric() for key in probes}
        if new_objects is not None:
            self.objects = {sources.probe(key): new_objects() for key in probes}

    def update(self, batch: TestBatch, labels: LabelMapRecorder | None) -> None:
        features = batch.features
        for key, probe in self.probes.items():
            predicted = protocol.labels(probe(features[key], batch.masks.shape[1:]))
            self.score(sources.probe(key), predicted, batch.masks, labels)


class FloorPart(Part):
    """``floor/<level>``: the resolution floor of each level for the test masks, and its per-object metrics."""

    def __init__(
        self,
        depth: int,
        num_classes: int,
        ignore_index: int,
        new_metric: Callable[[], BoundaryMetrics],
        new_objects: Callable[[], ObjectMetrics] | None,
        device: str,
    ):
        super().__init__()
        self.depth, self.num_classes, self.ignore_index, self.device = depth, num_classes, ignore_index, device
        self.boundary = {sources.floor(level): new_metric() for level in range(depth + 1)}
        if new_objects is not None:
            self.objects = {sources.floor(level): new_objects() for level in range(depth + 1)}
        self.masks: list[Tensor] = []
        self.done = f"floors of levels 0..{depth}"

    def update(self, batch: TestBatch, labels: LabelMapRecorder | None) -> None:
        self.masks.append(batch.masks.cpu())

    def finish(self, labels: LabelMapRecorder | None) -> None:
        """Once per set of test masks and level, shared by every model (``cached_floor``); test images of several
        sizes (native sizes) one batch at a time."""
        shapes = {tuple(m.shape[1:]) for m in self.masks}
        groups = [torch.cat(self.masks)] if len(shapes) == 1 else self.masks
        for level in range(self.depth + 1):
            for masks in groups:
                floor = cached_floor(masks, level, self.num_classes, self.ignore_index)
                self.score(sources.floor(level), floor.to(self.device), masks.to(self.device), None)
                if labels is not None:
                    labels.add(sources.floor(level), floor)
