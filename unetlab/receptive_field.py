"""``unetlab.receptive_field.receptive_fields``, the stable import path of the public API; the code lives in
``unetlab.explain.receptive_field``."""

from unetlab.explain.receptive_field import RF, receptive_fields

__all__ = ["RF", "receptive_fields"]
