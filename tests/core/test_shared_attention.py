"""Tests for DejaVu-SA (dejavu.shared_attention)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dejavu.losses import regeneration_loss
from dejavu.shared_attention import SharedAttention, SharedAttentionOutput

DIM = 16


def _inputs(seed: int = 0, shape=(2, DIM, 6, 10)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def _block(seed: int = 0, **kw) -> SharedAttention:
    torch.manual_seed(seed)
    return SharedAttention(DIM, **kw)


def _flops(module: nn.Module, *args) -> int:
    with FlopCounterMode(display=False) as counter:
        module(*args)
    return counter.get_total_flops()


@pytest.mark.parametrize("shape", [(2, DIM, 6, 10), (1, DIM, 7, 3), (3, DIM, 1, 5)])
def test_output_shapes_including_non_square(shape) -> None:
    sa = _block(regen_channels=3, qk_dim=8)
    x, xr = _inputs(shape=shape)
    out = sa(x, xr)
    assert isinstance(out, SharedAttentionOutput)
    assert out.features.shape == x.shape
    assert out.regenerated is not None
    assert out.regenerated.shape == (shape[0], 3, *shape[2:])
    assert sa(x).regenerated is None  # training without x_redacted: task branch only


def test_task_branch_equals_pre_norm_multihead_attention() -> None:
    # Independent reference: torch's MultiheadAttention with the same weights.
    sa = _block(num_heads=4)
    mha = nn.MultiheadAttention(DIM, 4, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([sa.q.weight, sa.k.weight, sa.v.weight]))
        mha.in_proj_bias.copy_(torch.cat([sa.q.bias, sa.k.bias, sa.v.bias]))
        mha.out_proj.weight.copy_(sa.proj.weight)
        mha.out_proj.bias.copy_(sa.proj.bias)
    x, _ = _inputs()
    tokens = x.flatten(2).transpose(1, 2)
    t = sa.norm(tokens)
    ref = tokens + mha(t, t, t, need_weights=False)[0]
    ref = ref.transpose(1, 2).reshape_as(x)
    torch.testing.assert_close(sa.eval()(x).features, ref, atol=1e-5, rtol=1e-5)


def test_regeneration_branch_uses_the_clean_attention_map() -> None:
    # Manual reference with explicit softmax(q k^T / sqrt(d)) over positions.
    sa = _block(num_heads=2, qk_dim=8)
    x, xr = _inputs(1, shape=(1, DIM, 3, 4))
    B, C, h, w = x.shape
    tok, tok_r = x.flatten(2).transpose(1, 2), xr.flatten(2).transpose(1, 2)
    t = sa.norm(tok)
    q = sa.q(t).view(B, h * w, 2, 4).transpose(1, 2)
    k = sa.k(t).view(B, h * w, 2, 4).transpose(1, 2)
    v_r = sa.regen_v(sa.regen_norm(tok_r)).view(B, h * w, 2, 8).transpose(1, 2)
    attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(4), dim=-1)
    gathered = (attn @ v_r).transpose(1, 2).reshape(B, h * w, C)
    ref = sa.regen_head((tok_r + gathered).transpose(1, 2).reshape(B, C, h, w))
    torch.testing.assert_close(sa.train()(x, xr).regenerated, ref, atol=1e-5, rtol=1e-5)


def test_eval_never_runs_the_regeneration_branch() -> None:
    sa = _block()
    fired: list[str] = []
    for name, module in sa.named_modules():
        if name.startswith(sa.regen_module_names):
            module.register_forward_hook(lambda m, i, o, name=name: fired.append(name))
    x, xr = _inputs()
    out = sa.eval()(x, xr)
    assert out.regenerated is None
    assert fired == []
    # The hooks do work: training runs the branch.
    sa.train()(x, xr)
    assert {"regen_norm", "regen_v", "regen_head"} <= set(fired)


def test_traced_eval_graph_has_no_regeneration_nodes() -> None:
    sa = _block().eval()
    gm = torch.fx.symbolic_trace(sa)
    called = {str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
    assert {"norm", "q", "k", "v", "proj"} <= called
    assert not any(c.startswith(sa.regen_module_names) for c in called)
    x, _ = _inputs()
    torch.testing.assert_close(gm(x).features, sa(x).features)
    # Tracing in training mode with a redacted input does include them (the check can fail).
    gm_train = torch.fx.symbolic_trace(sa.train())
    called_train = {str(n.target) for n in gm_train.graph.nodes if n.op == "call_module"}
    assert any(c.startswith("regen_head") for c in called_train)


def test_exported_eval_program_uses_no_regeneration_weights() -> None:
    sa = _block().eval()
    x, xr = _inputs()
    ep = torch.export.export(sa, (x, xr))
    regen_params = {
        ep.graph_signature.inputs_to_parameters[n.name]: n
        for n in ep.graph.nodes
        if n.op == "placeholder" and n.name in ep.graph_signature.inputs_to_parameters
    }
    regen = {k: n for k, n in regen_params.items() if k.startswith(sa.regen_module_names)}
    assert regen, "the regeneration parameters should exist as (unused) inputs"
    assert all(len(n.users) == 0 for n in regen.values())
    for node in ep.graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        assert not any(path.startswith(sa.regen_module_names) for path, _ in stack.values())
    out = ep.module()(x, xr)
    assert out.regenerated is None
    torch.testing.assert_close(out.features, sa(x).features)


def test_eval_flops_equal_those_without_the_regeneration_modules() -> None:
    sa = _block().eval()
    stripped = copy.deepcopy(sa).remove_regeneration()
    assert not stripped.has_regeneration and stripped.regen_modules() == {}
    x, xr = _inputs()
    eval_flops = _flops(sa, x, xr)
    assert eval_flops > 0
    assert eval_flops == _flops(stripped, x)
    torch.testing.assert_close(stripped(x).features, sa(x, xr).features)
    assert _flops(sa.train(), x, xr) > eval_flops


def test_regeneration_gradient_reaches_shared_qk_and_regen_modules_only() -> None:
    sa = _block()
    x, xr = _inputs()
    target = torch.randn(2, 3, 6, 10)
    out = sa.train()(x, xr)
    regeneration_loss(out.regenerated, target).backward()

    def grad_norm(module: nn.Module) -> float:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        return sum(float(g.abs().sum()) for g in grads)

    assert grad_norm(sa.q) > 0 and grad_norm(sa.k) > 0
    for module in sa.regen_modules().values():
        assert grad_norm(module) > 0
    assert all(p.grad is None for p in sa.v.parameters())
    assert all(p.grad is None for p in sa.proj.parameters())


def test_task_loss_gradient_does_not_reach_regen_modules() -> None:
    sa = _block()
    x, xr = _inputs()
    sa.train()(x, xr).features.square().mean().backward()
    assert all(p.grad is None for m in sa.regen_modules().values() for p in m.parameters())
    assert sa.v.weight.grad is not None and sa.q.weight.grad is not None


def test_parameter_bookkeeping() -> None:
    sa = _block(qk_dim=8, regen_hidden=12)
    d, qk = DIM, 8
    expected_task = 2 * d + 2 * (d * qk + qk) + 2 * (d * d + d)
    assert sa.inference_parameters() == expected_task
    assert set(sa.task_modules()) == {"norm", "q", "k", "v", "proj"}
    assert set(sa.regen_modules()) == {"regen_norm", "regen_v", "regen_head"}
    total = sum(p.numel() for p in sa.parameters())
    regen = sum(p.numel() for m in sa.regen_modules().values() for p in m.parameters())
    assert total == expected_task + regen
    sa.remove_regeneration()
    assert sum(p.numel() for p in sa.parameters()) == expected_task
    assert not any(k.startswith("regen") for k in sa.state_dict())
    with pytest.raises(RuntimeError, match="removed"):
        sa.train()(*_inputs())


def test_compiles() -> None:
    sa = _block().eval()
    x, _ = _inputs()
    compiled = torch.compile(sa, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x).features, sa(x).features)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="dim must be divisible by num_heads=3"):
        SharedAttention(16, num_heads=3)
    with pytest.raises(ValueError, match="qk_dim must be divisible"):
        SharedAttention(16, num_heads=4, qk_dim=6)
    with pytest.raises(ValueError, match="dim must be a positive int"):
        SharedAttention(0)
    sa = _block()
    with pytest.raises(ValueError, match="x must have 16 channels"):
        sa(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match=r"x_redacted must have the shape of x \(2, 16, 4, 4\)"):
        sa.train()(torch.randn(2, DIM, 4, 4), torch.randn(2, DIM, 4, 5))
