"""Shared fixtures. Files under ../shared are required in CI: a missing one
fails the test there (it only skips on a developer machine without them)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(relative: str) -> Path:
    """Path of a file under ../shared; fail in CI, skip elsewhere, when it is missing."""
    path = SHARED / relative
    if not path.exists():
        message = f"missing shared file {path}"
        if os.environ.get("CI"):
            pytest.fail(message + " (required when CI is set)")
        pytest.skip(message)
    return path


def require_module(name: str):
    """Import an optional module: skip without it, except in CI (which installs every extra), where it fails."""
    if os.environ.get("CI"):
        return importlib.import_module(name)
    return pytest.importorskip(name)


@pytest.fixture
def golden_checkpoint() -> Path:
    return shared_path("reference/tiny_biomoe/golden_checkpoint.pth")


@pytest.fixture
def golden_io() -> Path:
    return shared_path("reference/tiny_biomoe/golden_io.npz")


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """A synthetic AI4PAIN cohort of 3 train and 2 validation subjects, 10 windows each."""
    from tests.tiny_cohort import make_tiny_cohort

    return make_tiny_cohort(tmp_path_factory.mktemp("tiny_cohort"))


@pytest.fixture(scope="session")
def feature_cache_dir(tmp_path_factory) -> Path:
    """One feature cache for the training tests, so each embedding is computed once per session."""
    return tmp_path_factory.mktemp("feature_cache")
