"""Thin Hydra entry points. The YAML configs live in ``conf/`` and install as the package ``unetlab.conf``."""

from importlib.resources import files

# An absolute path works for editable and regular installs alike (Hydra resolves a relative
# config_path differently under a console script; see shared/ECOSYSTEM.md B1).
CONFIG_PATH = str(files("unetlab.conf"))
