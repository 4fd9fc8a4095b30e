"""Shared fixtures and the fixed hypothesis profile (same examples on every run, no database, no deadline)."""
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

settings.register_profile("course", derandomize=True, database=None, deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "course"))


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The unpacked CIFAR-10 ImageFolder copy; setup.sh puts it in data/cifar10-jpeg."""
    from simclr_helpers import resolve_data_dir
    path = resolve_data_dir()
    if not (path / "train").is_dir():
        pytest.fail(f"CIFAR-10 not found at {path}: run `bash setup.sh` (it unpacks ../shared/data/cifar10-jpeg.tar.gz) "
                    "or set CIFAR10_DIR to an unpacked copy.")
    return path
