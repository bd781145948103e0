"""Shared fixtures. The GPU tests need a wgpu adapter: without one they fail saying how to get
one (never a silent skip); CI installs Mesa's lavapipe."""

import os

import numpy as np
import pytest

# Mesa's software adapter warns on stderr without it.
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

import bptt  # noqa: E402


@pytest.fixture(scope="session")
def gpu():
    """The adapter the GPU tests run on, as one line."""
    try:
        return bptt.adapter_info()
    except RuntimeError as e:
        pytest.fail(
            f"the GPU tests need a wgpu adapter and found none: {e}. On headless Linux install Mesa's "
            "software Vulkan driver (lavapipe): `apt-get install mesa-vulkan-drivers` (see .ci/run)."
        )


def rel_err(a, b):
    """‖a − b‖ / ‖b‖ (‖a − b‖ when b is zero), in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    nb = np.linalg.norm(b)
    d = np.linalg.norm(a - b)
    return d / nb if nb else d
