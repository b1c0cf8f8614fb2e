"""nnU-Net's U-Nets (``dynamic_network_architectures``: ``PlainConvUNet``, ``ResidualEncoderUNet``) behind the
``UNetLike`` protocol (``docs/models.md``), and the factories that ``conf/model/nnunet_*.yaml`` build."""

from __future__ import annotations

from unetlab.models.measured import MeasuredUNet

ADAPTERS: dict[str, type[MeasuredUNet]] = {}  # "<module>.<class>" of the library network -> its adapter
