"""Boundary metrics: pure functions on bool masks (``functional``) and torchmetrics wrappers."""

from unetlab.metrics import functional

__all__ = ["functional"]
