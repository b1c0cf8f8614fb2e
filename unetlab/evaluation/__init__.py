"""Evaluating a trained model: model metrics, depth probes, resolution floors, skip ablation and Shapley values,
the results table."""
