"""Suite-wide test settings."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # `make test` runs two pytest workers on a 2-core machine; torch's default
    # of one thread per core in each worker oversubscribes the CPU and slows
    # convolutions by an order of magnitude.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
