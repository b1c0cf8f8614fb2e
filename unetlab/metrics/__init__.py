"""Boundary metrics: pure functions on bool masks (``functional``, per object: ``objects``) and the torchmetrics
wrappers over label maps."""

from unetlab.metrics import functional, objects
from unetlab.metrics.classes import BoundaryMetrics, ObjectMetrics

__all__ = ["BoundaryMetrics", "ObjectMetrics", "functional", "objects"]
