"""Training one model: ``train(cfg)``, the Lightning task, callbacks, checkpoints, the run directory's lock."""
