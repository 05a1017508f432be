"""Tests marked `cuda` need a CUDA device: without one they are skipped, saying so (bench/gpu_suite.sh
runs them where a GPU is lent)."""
from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (bench/gpu_suite.sh runs the cuda tests on one)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
