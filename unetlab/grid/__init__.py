"""The main job's grid (``unetlab-ablate``): the plan of Hydra sweeps, and training, evaluating, drawing and
reporting it."""
