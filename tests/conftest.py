from __future__ import annotations

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    # under CI (ACT_ZOO_CI=1, set by .ci/run), a skip for a missing dependency CI installs fails the run
    from ci_guard import register

    register(config)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
