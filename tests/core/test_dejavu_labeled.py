"""``DejaVu.forward`` with a ``labeled`` mask: task, CL, TS on labelled rows, regen on all."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dejavu import DejaVu
from dejavu.dejavu import labeled_rows, select_rows

NUM_CLASSES = 4


class TinySegNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, NUM_CLASSES, 1)
        self.heads = {"seg": NUM_CLASSES}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"seg": self.head(self.body(x))}


class RecordingLoss:
    """Cross-entropy that records the rows it sees and refuses unlabelled ones."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, pred, batch):
        if "labeled" in batch:
            assert bool(batch["labeled"].all()), "task loss called on an unlabelled row"
        assert pred["seg"].shape[0] == batch["seg"].shape[0] == batch["image"].shape[0]
        self.calls.append({"rows": int(pred["seg"].shape[0]), "names": list(batch["name"])})
        return F.cross_entropy(pred["seg"], batch["seg"], ignore_index=255)


def make_batch(labeled: list[bool], h: int = 24, w: int = 36) -> dict:
    b = len(labeled)
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor(labeled)
    seg = torch.randint(0, NUM_CLASSES, (b, h, w), generator=g)
    seg[~mask] = 255  # what the data module puts in unlabelled rows
    return {
        "image": torch.randn(b, 3, h, w, generator=g),
        "seg": seg,
        "name": [f"img{i}" for i in range(b)],
        "labeled": mask,
    }


def make_model(loss, **kw) -> DejaVu:
    torch.manual_seed(0)
    return DejaVu(TinySegNet(), loss, crm_kwargs={"width": 8, "depth": 2}, seed=0, **kw)


def test_task_and_cyclic_see_labelled_rows_regeneration_sees_all():
    loss = RecordingLoss()
    model = make_model(loss, cyclic_weight=0.5)
    regen_rows = []
    model.regen_loss.register_forward_hook(lambda m, a, o: regen_rows.append(a[0].shape[0]))
    batch = make_batch([True, False, True, False, False])
    out = model(batch)
    # one call for the task loss, one for DejaVu-CL: both on the two labelled rows
    assert [c["rows"] for c in loss.calls] == [2, 2]
    assert all(c["names"] == ["img0", "img2"] for c in loss.calls)
    assert regen_rows == [5]
    assert out["pred"]["seg"].shape[0] == 5 and out["regenerated"].shape[0] == 5
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["cyclic"] > 0


def test_task_loss_equals_the_loss_of_the_labelled_rows_alone():
    batch = make_batch([False, True, True, False])
    model = make_model(lambda p, b: F.cross_entropy(p["seg"], b["seg"], ignore_index=255))
    out = model(batch)
    rows = batch["labeled"]
    with torch.no_grad():
        logits = model.base(batch["image"][rows])["seg"]
    expected = F.cross_entropy(logits, batch["seg"][rows], ignore_index=255)
    assert out["task"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_all_labelled_is_the_same_as_no_mask():
    batch = make_batch([True, True, True])
    plain = {k: v for k, v in batch.items() if k != "labeled"}
    a = make_model(RecordingLoss(), cyclic_weight=0.5)(batch)
    b = make_model(RecordingLoss(), cyclic_weight=0.5)(plain)
    for key in ("loss", "task", "regen", "cyclic"):
        assert torch.equal(a[key], b[key]), key


def test_no_labelled_row_gives_a_zero_task_loss_that_keeps_the_graph():
    loss = RecordingLoss()
    model = make_model(loss, cyclic_weight=0.5)
    out = model(make_batch([False, False]))
    assert loss.calls == []  # never called
    assert out["task"].item() == 0.0 and out["cyclic"].item() == 0.0
    assert out["task"].requires_grad and out["regen"] > 0
    out["loss"].backward()
    grads = [p.grad for p in model.base.parameters()]
    assert all(g is not None for g in grads)  # DDP needs every parameter in the graph
    assert any(g.abs().sum() > 0 for g in grads)  # the regeneration gradient reaches the base


def test_a_bad_labeled_entry_is_refused():
    model = make_model(RecordingLoss())
    batch = make_batch([True, False])
    with pytest.raises(ValueError, match="bool tensor of shape \\(2,\\)"):
        model({**batch, "labeled": torch.tensor([1, 0])})
    with pytest.raises(ValueError, match="bool tensor"):
        model({**batch, "labeled": torch.tensor([True, False, True])})
    with pytest.raises(ValueError, match="got a list"):
        labeled_rows({"labeled": [True, False]}, 2)


def test_select_rows_keeps_what_has_no_batch_dimension():
    mask = torch.tensor([False, True])
    out = select_rows(
        {"x": torch.arange(4).view(2, 2), "s": torch.tensor(3.0), "n": ("a", "b")}, mask
    )
    assert out["x"].tolist() == [[2, 3]] and out["s"].item() == 3.0 and out["n"] == ["b"]
