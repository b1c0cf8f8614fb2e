"""The theoretical receptive fields, as ``unetlab-viz`` and the explorer's data use them; the code lives one layer
down, in ``unetlab.receptive_field``, so that the report can describe a network's fields too."""

from unetlab.receptive_field import RF, centre, path_fields, receptive_fields, unit_field

__all__ = ["RF", "receptive_fields", "unit_field", "centre", "path_fields"]
