"""Hydra finds launchers only in the ``hydra_plugins`` namespace: ``hydra/launcher=slurm`` names this class, whose code
is ``unetlab.runs.slurm_launcher.SlurmLauncher``. Without the submitit launcher (the ``slurm`` extra) it is absent, and
``hydra/launcher=slurm`` says which extra to install (``unetlab.cli.check_launcher``)."""

try:
    from unetlab.runs.slurm_launcher import SlurmLauncher
except ImportError:  # hydra-submitit-launcher is not installed
    pass
else:

    class UnetlabSlurmLauncher(SlurmLauncher):
        """``hydra/launcher=slurm``: see ``unetlab.runs.slurm_launcher``."""
