"""Every test gets its own tmp dirs; wandb is off and writes nowhere near the checkout."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))  # wandb stages table artifacts there
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
