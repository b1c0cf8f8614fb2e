"""Boundary metrics: pure functions on bool masks (``functional``) and the torchmetrics wrapper."""

from unetlab.metrics import functional
from unetlab.metrics.classes import BoundaryMetrics

__all__ = ["BoundaryMetrics", "functional"]
