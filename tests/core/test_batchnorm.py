"""dejavu.batchnorm.frozen_bn_stats: passes on non-data images keep the running statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dejavu.batchnorm import frozen_bn_stats


@pytest.mark.parametrize("momentum", [0.3, None], ids=["ema", "cumulative"])
def test_running_statistics_and_momentum_are_kept(momentum) -> None:
    bn = nn.BatchNorm2d(2, momentum=momentum).train()
    bn(torch.randn(4, 2, 3, 3))  # one ordinary update first
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    with frozen_bn_stats(bn):
        out = bn(torch.randn(4, 2, 3, 3) * 4 + 2)
    assert bn.momentum == momentum and bn.num_batches_tracked.item() == 1
    torch.testing.assert_close(bn.running_mean, mean)
    torch.testing.assert_close(bn.running_var, var)
    # still normalised with the batch statistics
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)


def test_restored_after_an_error_and_nested_layers_are_found() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Sequential(nn.BatchNorm2d(4, momentum=0.2)))
    with pytest.raises(RuntimeError), frozen_bn_stats(net):
        net(torch.randn(2, 3, 2, 2) + 7)
        raise RuntimeError("interrupted")
    bn = net[1][0]
    assert bn.momentum == 0.2 and bn.num_batches_tracked.item() == 0
    torch.testing.assert_close(bn.running_mean, torch.zeros(4))
