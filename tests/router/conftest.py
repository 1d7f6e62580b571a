"""Router test fixtures: every sublist test runs with the match cache on and off."""

from __future__ import annotations

import pytest

from hybridbus.router import Sublist


@pytest.fixture(params=[True, False], ids=["cache", "nocache"])
def sl(request) -> Sublist:
    return Sublist(cache=request.param)
