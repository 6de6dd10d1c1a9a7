from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_SERVICES = os.environ.get("CROSSROUTE_REQUIRE_SERVICES") == "1"


def need_binary(name: str) -> str:
    """Path of a server binary, or skip (fail under CI, where .ci/run installs it)."""
    path = shutil.which(name)
    if path is None:
        if REQUIRE_SERVICES:
            pytest.fail(f"{name} is required under CI (CROSSROUTE_REQUIRE_SERVICES=1) but is not on PATH")
        pytest.skip(f"{name} not installed")
    return path
