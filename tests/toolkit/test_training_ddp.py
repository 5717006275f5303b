"""DDP: two CPU processes (gloo) train on the embedded scenes and end in the same state.

The processes are started the way ``torchrun`` starts them (``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` in the
environment, ``strategy: ddp``), so Lightning joins them instead of launching
its own; this is the multi-node path too. Each rank writes a hash of its base
network's state and its synced validation metrics; the parent compares the
ranks with each other and with a one-process evaluation of the saved
checkpoint on the whole validation split.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.multiprocessing as mp

from dejavu.toolkit.config import ExperimentConfig, load_config
from dejavu.toolkit.training import run_fit, run_validate

WORLD = 2


class _Report(pl.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.confmat: list[list[int]] = []
        self.evaluated: list[str] = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *_a) -> None:  # type: ignore[no-untyped-def]
        if not trainer.sanity_checking:
            self.evaluated += list(batch["name"])

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Before the module computes and resets it: this rank's confusion matrix, summed
        # over the ranks (what the synced metrics are computed from).
        if trainer.sanity_checking:
            return
        confmat = pl_module.val_metrics.metrics["seg"].confmat.clone()
        torch.distributed.all_reduce(confmat)
        self.confmat = confmat.long().tolist()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        digest = hashlib.sha256()
        for name, value in sorted(pl_module.eval_model().state_dict().items()):
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        report = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "step": trainer.global_step,
            "hash": digest.hexdigest(),
            "metrics": metrics,
            "confmat": self.confmat,
            "evaluated": self.evaluated,
        }
        Path(self.out_dir, f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


def _worker(rank: int, port: int, cfg: ExperimentConfig, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(WORLD),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        NODE_RANK="0",
    )
    run_fit(cfg, enable_progress_bar=False, callbacks=[_Report(out_dir)])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_ends_identical_on_both_ranks(tmp_path):
    cfg = load_config(
        None,
        [
            f"output_dir={tmp_path / 'runs'}",
            "name=ddp",
            f"data.root={tmp_path / 'cache'}",
            "data.num_train=8",
            "data.num_val=5",  # 3 + 2: the split does not divide by the world size
            "data.batch_size=2",
            "data.num_workers=0",
            "data.kwargs={size: [32, 48]}",
            "model.name=fpn_test_resnet",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.strategy=ddp",
            "trainer.image_log_every_n_steps=0",
        ],
    )
    mp.spawn(_worker, args=(_free_port(), cfg, str(tmp_path)), nprocs=WORLD, join=True)

    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert [r["rank"] for r in reports] == [0, 1]
    assert all(r["world_size"] == WORLD for r in reports)
    # 8 images / 2 ranks / batch 2 = 2 steps, each on a different half of the data
    assert all(r["step"] == 2 for r in reports)
    assert reports[0]["hash"] == reports[1]["hash"]
    assert reports[0]["metrics"] == reports[1]["metrics"]
    assert "val/seg/miou" in reports[0]["metrics"]

    # Only rank 0 wrote the run directory, and the synced metrics are those of the
    # whole validation split: one process evaluating the checkpoint agrees.
    run = cfg.run_dir
    for name in ("config.yaml", "last.ckpt", "base.safetensors", "metrics.json"):
        assert (run / name).is_file(), name
    single = run_validate(
        load_config(run / "config.yaml", ["trainer.devices=1", "trainer.strategy=auto"]),
        run / "last.ckpt",
    )
    assert single["seg/miou"] == pytest.approx(reports[0]["metrics"]["val/seg/miou"], abs=1e-6)
    assert single["seg/aacc"] == pytest.approx(reports[0]["metrics"]["val/seg/aacc"], abs=1e-6)

    # Exact evaluation: each validation image once across the ranks, and the summed
    # confusion matrix equal to the one-process one.
    evaluated = reports[0]["evaluated"] + reports[1]["evaluated"]
    assert sorted(evaluated) == sorted(set(evaluated)) and len(evaluated) == 5
    assert reports[0]["confmat"] == reports[1]["confmat"] == _single_process_confmat(run)


def _single_process_confmat(run: Path) -> list[list[int]]:
    from dejavu.metrics import SegmentationMetrics
    from dejavu.toolkit.training import DenseDataModule, load_eval_model

    cfg = load_config(run / "config.yaml", ["trainer.devices=1", "trainer.strategy=auto"])
    model, _ = load_eval_model(run / "last.ckpt")
    metric = SegmentationMetrics(6)
    loader = DenseDataModule(cfg).val_dataloader()
    with torch.no_grad():
        for batch in loader:
            metric.update(model(batch["image"])["seg"].argmax(dim=1), batch["seg"])
    return metric.confmat.long().tolist()
