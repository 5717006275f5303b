"""Repository-wide pytest settings: the namespace every docstring example runs in."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace: dict) -> None:
    # Docstring examples use torch, nn and F without importing them, as the
    # PyTorch docs do; everything else they import themselves.
    doctest_namespace.update(torch=torch, nn=nn, F=F)
