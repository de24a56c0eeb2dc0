"""Fixtures shared by the verify core's unit tests."""

import pytest

from tests.support.verifier import World, one_key_world


@pytest.fixture
def world() -> World:
    """One key, a verifier over it, its clock and hasher, and the key's secret (``tests.support.verifier``)."""
    return one_key_world()
