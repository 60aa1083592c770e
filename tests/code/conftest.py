"""Fixtures of the stage tests: one lab of generated data and trained models for all gate tests."""

from __future__ import annotations

import pytest

from tests.code.planted import Lab, make_lab


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """Generated credit data and a good model exported to ONNX, shared by the gate tests."""
    return make_lab(tmp_path_factory.mktemp("lab"))
