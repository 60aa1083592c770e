"""Fixtures of the stage tests: one lab of generated data and trained models for all gate tests."""

from __future__ import annotations

import pytest

from tests.code.planted import Lab, make_lab, make_species_lab


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """Generated credit data and a good model exported to ONNX, shared by the gate tests."""
    return make_lab(tmp_path_factory.mktemp("lab"))


@pytest.fixture(scope="session")
def species_lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """Generated three-class data with string labels and a good model exported to ONNX."""
    return make_species_lab(tmp_path_factory.mktemp("species"))
