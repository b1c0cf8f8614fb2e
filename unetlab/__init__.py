"""unetlab: how much spatial detail a U-Net loses with depth, and how much its skips give back."""

from unetlab.models.unet import UNet

__all__ = ["UNet"]
__version__ = "0.1.0"
