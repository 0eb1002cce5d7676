"""Fixtures for the sits tests: irregular merged S1/S2 dates with same-day tokens and long gaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line("markers", "requires_cuda: needs a CUDA device; skipped only where none exists")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device on this machine")
    for item in items:
        if "requires_cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small tensors on a shared 2-core machine: one intra-op thread avoids thread hand-off stalls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
