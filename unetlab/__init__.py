"""unetlab: how much spatial detail a U-Net loses with depth, and how much its skips give back."""

__all__ = ["UNet"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``unetlab.UNet`` on first use: importing ``unetlab`` (every command's --help does) does not import torch."""
    if name == "UNet":
        from unetlab.models.unet import UNet

        return UNet
    raise AttributeError(f"module 'unetlab' has no attribute {name!r}")
