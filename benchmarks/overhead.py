"""Training overhead of DejaVu and its (zero) inference cost, measured side by side.

For a base network (default ``hrnet18``) at CamVid's 240 x 180 (padded by the
model as it needs), batch 8, on this machine's CPU, this script measures:

- training-step time (forward + backward + AdamW step) of +DejaVu over the
  baseline, alternating the two every step, medians over >= 10 steps after
  warm-up;
- peak resident memory of a training step of each (each in its own
  subprocess, so one does not inherit the other's peak);
- inference latency of the two inference models (``eval_model()`` of each,
  and the TorchScript files ``dejavu export`` writes of them), alternating,
  medians — the ratio should be 1.00 within noise;
- how the step-time ratio grows with 2x and 4x the pixels, and how CRM-R's
  cost grows with the number of class groups.

Usage::

    python benchmarks/overhead.py                      # full run, writes the JSON
    python benchmarks/overhead.py --steps 3 --quick    # a fast sanity run
    python benchmarks/overhead.py --config configs/camvid/hrnet18_dejavu.yaml  # a config's design

Results go to ``benchmarks/results/overhead.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import torch
from torch import nn

from dejavu import DejaVu
from dejavu.toolkit.compare import cpu_model
from dejavu.toolkit.models import create_model
from dejavu.toolkit.tasks import create_task
from dejavu.toolkit.timing import interleaved_times

NUM_CLASSES = 11  # CamVid
#: The task measured: CamVid segmentation, or with --config the config's task and classes.
TASK: dict = {"name": "segmentation", "num_classes": NUM_CLASSES}
#: CRM settings that --crm-width/--crm-depth/--crm-scale override (empty: library defaults).
CRM_OVERRIDES: dict = {}
#: A config whose ``dejavu`` section defines the design measured (--config / --set).
DESIGN: dict = {}


def config_task(config: Path, overrides: list[str]) -> dict:
    """``create_task`` arguments of a config: its task, its dataset's classes and categories."""
    from dejavu.toolkit.config import load_config
    from dejavu.toolkit.data.base import panoptic_categories
    from dejavu.toolkit.data.factory import dataset_class

    cfg = load_config(config, overrides)
    klass = dataset_class(cfg.data.name)
    out = {"name": cfg.task.name, "num_classes": len(klass.class_names)}
    if cfg.task.name == "panoptic":
        out["categories"] = panoptic_categories(
            klass.class_names, klass.thing_classes, cfg.data.name
        )
        out["postprocess"] = cfg.task.postprocess
    if cfg.task.mask_loss:
        out["mask_loss"] = cfg.task.mask_loss
    return out


def build(variant: str, model_name: str, crm: str = "forward", **crm_kwargs) -> nn.Module:
    """The baseline (task loss only) or DejaVu training module for one model."""
    torch.manual_seed(0)
    task = create_task(**TASK)
    base = create_model(model_name, task=TASK["name"], num_classes=TASK["num_classes"])
    if variant == "baseline":
        return _Baseline(base, task)
    if DESIGN and crm == "forward" and not crm_kwargs:
        from dejavu.toolkit.config import load_config
        from dejavu.toolkit.training.module import build_objective

        cfg = load_config(DESIGN["config"], [*DESIGN["overrides"], "dejavu.enabled=true"])
        return build_objective(cfg.dejavu, task, base, seed=cfg.seed)
    return DejaVu(
        base,
        task,
        conditioning=task.conditioning,
        crm=crm,
        crm_kwargs=crm_kwargs or None,
        redaction="random",
        seed=0,
    )


class _Baseline(nn.Module):
    """The same base network and task loss without DejaVu."""

    def __init__(self, base: nn.Module, task) -> None:
        super().__init__()
        self.base, self.task = base, task

    def forward(self, batch):
        return self.task(self.base(batch["image"]), batch)

    def eval_model(self) -> nn.Module:
        return self.base


def make_batch(batch: int, h: int, w: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    k = TASK["num_classes"]
    if "categories" not in TASK:  # segmentation: random labels per pixel (as before)
        return {
            "image": torch.randn(batch, 3, h, w, generator=g),
            "seg": torch.randint(0, k, (batch, h, w), generator=g),
        }
    # Panoptic: a 6 x 8 grid of random classes; each cell of a thing class is one instance,
    # so the mask-classification loss sees a realistic few dozen segments per image.
    cells = torch.randint(0, k, (batch, 1, 6, 8), generator=g)
    ids = torch.arange(1, 49).view(1, 1, 6, 8).expand(batch, 1, 6, 8)
    things = torch.tensor([c["isthing"] for c in TASK["categories"]])
    seg = torch.nn.functional.interpolate(cells.float(), size=(h, w), mode="nearest").long()
    inst = torch.nn.functional.interpolate(ids.float(), size=(h, w), mode="nearest").long()
    seg, inst = seg[:, 0], inst[:, 0]
    return {
        "image": torch.randn(batch, 3, h, w, generator=g),
        "seg": seg,
        "instance": torch.where(things[seg], inst, torch.zeros_like(inst)),
    }


def _step_fn(module: nn.Module):
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)

    def step(batch) -> None:
        out = module(batch)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()

    return step


def alternate(fns: dict[str, Callable], arg, steps: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each function on ``arg``, the calls interleaved."""
    times = interleaved_times({k: partial(fn, arg) for k, fn in fns.items()}, steps, warmup)
    return {k: statistics.median(v) for k, v in times.items()}


def train_ratio(model_name: str, batch: int, h: int, w: int, steps: int, warmup: int, **crm):
    crm = {**CRM_OVERRIDES, **crm}
    mods = {v: build(v, model_name, **crm).train() for v in ("baseline", "dejavu")}
    t = alternate({k: _step_fn(m) for k, m in mods.items()}, make_batch(batch, h, w), steps, warmup)
    return t, t["dejavu"] / t["baseline"]


def _infer_fn(model):
    """One timed call of an inference network (no autograd bookkeeping)."""

    def f(inp):
        with torch.inference_mode():
            model(inp)

    return f


def inference_ratio(model_name: str, batch: int, h: int, w: int, steps: int, warmup: int):
    mods = {v: build(v, model_name).eval_model().eval() for v in ("baseline", "dejavu")}
    x = make_batch(batch, h, w)["image"]

    t = alternate({k: _infer_fn(m) for k, m in mods.items()}, x, steps, warmup)
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in mods.items()}
    return t, t["dejavu"] / t["baseline"], params


def exported_inference_ratio(model_name: str, batch: int, h: int, w: int, steps: int, warmup: int):
    """Latency of the two inference networks as `dejavu export --format torchscript` writes them."""
    import tempfile

    from dejavu.toolkit.export import export_torchscript

    x = make_batch(batch, h, w)["image"]
    loaded = {}
    with tempfile.TemporaryDirectory() as tmp:
        for v in ("baseline", "dejavu"):
            model = build(v, model_name).eval_model().eval()
            path = export_torchscript(model, x[:1], Path(tmp) / f"{v}.pt")
            loaded[v] = torch.jit.load(str(path))

    t = alternate({k: _infer_fn(m) for k, m in loaded.items()}, x, steps, warmup)
    return t, t["dejavu"] / t["baseline"]


def peak_memory_subprocess(variant: str, model_name: str, batch: int, h: int, w: int) -> float:
    """Peak RSS (MiB) added by two training steps of one variant, in a fresh process."""
    cmd = [sys.executable, __file__, "--peak-of", variant, "--model", model_name]
    cmd += ["--batch", str(batch), "--height", str(h), "--width", str(w)]
    for key, value in CRM_OVERRIDES.items():
        cmd += [f"--crm-{key}", str(value)]
    if DESIGN:
        cmd += ["--config", DESIGN["config"]]
        for o in DESIGN["overrides"]:
            cmd += ["--set", o]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _rss_mib() -> float:
    """Current resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _measure_peak(variant: str, model_name: str, batch: int, h: int, w: int) -> float:
    """Peak resident memory added by two training steps, sampled every 2 ms.

    ``ru_maxrss`` cannot be used: importing the libraries can peak higher than
    a training step, which would hide the step's memory.
    """
    import threading

    module = build(variant, model_name, **CRM_OVERRIDES).train()
    data, step = make_batch(batch, h, w), _step_fn(module)
    before, peak, done = _rss_mib(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mib())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    step(data)
    step(data)
    done.set()
    sampler.join()
    return peak[0] - before


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="hrnet18")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--height", type=int, default=180)
    ap.add_argument("--width", type=int, default=240)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--groups", type=int, nargs="*", default=[1, 2, 4, 11])
    ap.add_argument("--quick", action="store_true", help="skip the scaling and memory parts")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/overhead.json"))
    ap.add_argument("--crm-width", type=int, help="CRM width (default: the library's, 16)")
    ap.add_argument("--crm-depth", type=int, help="CRM levels (default: the library's, 3)")
    ap.add_argument("--crm-scale", type=float, help="CRM resolution (default: the library's, 0.5)")
    ap.add_argument(
        "--config", type=Path, help="measure the DejaVu design of this config (its dejavu section)"
    )
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--peak-of", choices=["baseline", "dejavu"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for key in ("width", "depth", "scale"):
        value = getattr(args, f"crm_{key}")
        if value is not None:
            CRM_OVERRIDES[key] = value
    if args.config is not None:
        DESIGN.update(config=str(args.config), overrides=list(args.overrides))
        TASK.update(config_task(args.config, args.overrides))
    if args.peak_of:  # child process of peak_memory_subprocess
        print(_measure_peak(args.peak_of, args.model, args.batch, args.height, args.width))
        return {}

    b, h, w = args.batch, args.height, args.width
    result: dict = {
        "model": args.model,
        "batch": b,
        "input": [h, w],
        "steps": args.steps,
        "crm": CRM_OVERRIDES
        or ("the config's dejavu section (design)" if DESIGN else None)
        or "library defaults (ForwardCRM width 16, depth 3, scale 0.5)",
        "design": DESIGN or None,
        "task": {k: v for k, v in TASK.items() if k != "categories"},
        "warmup": args.warmup,
        "machine": {
            "cpu": cpu_model(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    times, ratio = train_ratio(args.model, b, h, w, args.steps, args.warmup)
    result["train_step_s"] = times
    result["train_step_ratio"] = ratio
    print(
        f"train step  baseline {times['baseline']:.3f}s  dejavu {times['dejavu']:.3f}s  "
        f"ratio {ratio:.3f}"
    )

    t_inf, r_inf, params = inference_ratio(args.model, b, h, w, args.steps, args.warmup)
    result["inference_s"] = t_inf
    result["inference_latency_ratio"] = r_inf
    result["inference_params"] = params
    print(
        f"inference   baseline {t_inf['baseline']:.3f}s  dejavu {t_inf['dejavu']:.3f}s  "
        f"ratio {r_inf:.3f}  params {params}"
    )
    t_exp, r_exp = exported_inference_ratio(args.model, b, h, w, args.steps, args.warmup)
    result["inference_exported_torchscript_s"] = t_exp
    result["inference_exported_latency_ratio"] = r_exp
    print(
        f"exported    baseline {t_exp['baseline']:.3f}s  dejavu {t_exp['dejavu']:.3f}s  "
        f"ratio {r_exp:.3f}  (TorchScript)"
    )

    if not args.quick:
        result["peak_memory_mib"] = {
            v: peak_memory_subprocess(v, args.model, b, h, w) for v in ("baseline", "dejavu")
        }
        print(f"peak memory (MiB added by training) {result['peak_memory_mib']}")
        scaling = {}
        for factor in (2, 4):
            # Scale the pixel count by `factor` keeping the aspect ratio.
            s = factor**0.5
            hh, ww = round(h * s), round(w * s)
            _, r = train_ratio(args.model, b, hh, ww, max(3, args.steps // 2), 1)
            scaling[f"{factor}x"] = {"input": [hh, ww], "train_step_ratio": r}
            print(f"{factor}x pixels ({hh}x{ww}): ratio {r:.3f}")
        result["pixel_scaling"] = scaling
        groups = {}
        for g in args.groups:
            _, r = train_ratio(
                args.model, b, h, w, max(3, args.steps // 2), 1, crm="recursive", num_groups=g
            )
            groups[str(g)] = r
            print(f"CRM-R with {g} class groups: ratio {r:.3f}")
        result["crm_r_groups_ratio"] = groups
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
