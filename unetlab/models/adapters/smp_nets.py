"""segmentation_models_pytorch's ``Unet`` behind the ``UNetLike`` protocol (``docs/models.md``), and the factory that
``conf/model/smp_unet.yaml`` builds."""

from __future__ import annotations

from unetlab.models.measured import MeasuredUNet

ADAPTERS: dict[str, type[MeasuredUNet]] = {}  # "<module>.<class>" of the library network -> its adapter
