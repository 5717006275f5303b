"""Headroom of several DejaVu designs on one network, side by side (``dejavu diagnose`` each).

Every design is a set of ``--set`` overrides of one config; all are measured
on the same network checkpoint (so their headrooms are comparable) and the
same redaction seed. Parameter-free CRMs are measured as they are; a learned
CRM is fitted on the frozen network first (``--crm-steps``).

Usage::

    python benchmarks/diagnose_designs.py configs/camvid/hrnet18_dejavu.yaml \\
        --ckpt runs/camvid_full/runs/baseline/seed0/last.ckpt --tag e45 \\
        --out-dir benchmarks/results

writes ``diagnose_<tag>_<design>.json`` per design and ``diagnose_<tag>.md``
(the summary table), and prints the table.
``python benchmarks/diagnose_designs.py --summarize REPORT.json ...`` tabulates
existing reports, sorted by headroom.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dejavu.toolkit.config import load_config
from dejavu.toolkit.diagnose import run_diagnose

#: name -> overrides of a CamVid config (ours; docs/results.md explains them). Every design
#: names its CRM and redaction, so the config only supplies data, model and schedule.
B32 = "dejavu.redaction={name: blocks, block: 32, ratio: 0.75}"
B16 = "dejavu.redaction={name: blocks, block: 16, ratio: 0.75}"
B8 = "dejavu.redaction={name: blocks, block: 8, ratio: 0.75}"
R25 = "dejavu.redaction={name: random, p: 0.25}"
R50 = "dejavu.redaction={name: random, p: 0.5}"
CRMF = "dejavu.crm={kind: forward, width: 16, depth: 3, scale: 0.5}"
SPADE = "dejavu.crm={kind: spade, width: 16, depth: 3}"
ANCHOR = "dejavu.crm_truth_weight=1.0"
SOFT = "dejavu.conditioning.hard=false"
DESIGNS: dict[str, list[str]] = {
    "crmf": [CRMF, B32],
    "crmf_random": [CRMF, R25],
    "crmf_anchored": [CRMF, B32, ANCHOR],
    "spade": [SPADE, B32],
    "spade_random": [SPADE, R25],
    "spade_anchored": [SPADE, B32, ANCHOR],
    "spade_lowpass": [
        "dejavu.crm={kind: spade, width: 16, depth: 3, use_keep: false}",
        "dejavu.redaction={name: lowpass, cutoff: 0.05}",
        "dejavu.regen_loss={kind: l1, kept_weight: 1.0, redacted_weight: 1.0}",
    ],
    "zero_image": ["dejavu.crm={kind: zero}", B32],
    # Tiles (working-resolution pixels) must be larger than the 16-pixel blocks, or a
    # redacted tile has no visible pixel and falls back to the image-level colours.
    "zero_t32": ["dejavu.crm={kind: zero, tile: 32}", B32],
    "zero_t48": ["dejavu.crm={kind: zero, tile: 48}", B32],
    "zero_image_soft": ["dejavu.crm={kind: zero}", B32, SOFT],
    "zero_image_b16": ["dejavu.crm={kind: zero}", B16],
    "zero_t16_b8": ["dejavu.crm={kind: zero, tile: 16}", B8],
    "zero_image_random": ["dejavu.crm={kind: zero}", R25],
    "zero_t4_random": ["dejavu.crm={kind: zero, tile: 4}", R25],
    "zero_t8_random": ["dejavu.crm={kind: zero, tile: 8}", R25],
    "zero_t8_random50": ["dejavu.crm={kind: zero, tile: 8}", R50],
    "zero_t8_random_full": ["dejavu.crm={kind: zero, tile: 16, scale: 1.0}", R25],
    "zero_image_random_soft": ["dejavu.crm={kind: zero}", R25, SOFT],
    "zero_image_gradient": [
        "dejavu.crm={kind: zero}",
        B32,
        "dejavu.regen_loss={kind: gradient, kept_weight: 0.0}",
    ],
}


def _design_text(report: dict) -> str:
    d = report["design"]
    crm = ", ".join(f"{k} {v}" for k, v in d["crm"].items() if k not in ("kind", "width", "depth"))
    red = ", ".join(f"{k} {v}" for k, v in d["redaction"].items() if k != "name")
    hard = "hard" if d["conditioning"].get("hard") else "soft"
    if report.get("resolved_config", {}).get("dejavu", {}).get("crm_truth_weight", 0) > 0:
        crm = ", ".join(filter(None, [crm, "anchored to the truth"]))
    return (
        f"{d['crm']['kind']}{f' ({crm})' if crm else ''} | {d['redaction']['name']} ({red}) | "
        f"{hard} | {d['regen_loss']['kind']}"
    )


def summarize(paths: list[Path]) -> str:
    """A markdown table of diagnose reports (one row each), sorted by headroom."""
    reports = [json.loads(p.read_text()) for p in paths]
    reports.sort(key=lambda r: -r["headroom"])
    lines = [
        "| CRM | redaction | masks | loss | CRM params | err truth | err own | err other "
        "| err uniform | informativeness | headroom |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in reports:
        e = r["errors"]
        lines.append(
            f"| {_design_text(r)} | {r['crm_parameters']:,} | {e['truth']:.4f} | {e['own']:.4f} "
            f"| {e.get('other', float('nan')):.4f} | {e['uniform']:.4f} "
            f"| {r['informativeness']:.3f} | {100 * r['headroom']:+.1f} % |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("config", type=Path, nargs="?")
    ap.add_argument("--summarize", type=Path, nargs="+", help="only tabulate these reports")
    ap.add_argument("--ckpt", type=Path, help="the network every design uses")
    ap.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=list(DESIGNS))
    ap.add_argument("--tag", default="run", help="name part of the output files")
    ap.add_argument("--crm-steps", type=int, default=300)
    ap.add_argument("--num-images", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    if args.summarize:
        print(summarize(args.summarize), end="")
        return
    if args.config is None or args.ckpt is None:
        ap.error("CONFIG and --ckpt are required unless --summarize is given")

    rows = []
    for name in args.designs:
        cfg = load_config(args.config, DESIGNS[name])
        print(f"== {name}: {' '.join(DESIGNS[name]) or '(config as is)'}", file=sys.stderr)
        out = args.out_dir / f"diagnose_{args.tag}_{name}.json"
        report = run_diagnose(
            cfg,
            args.ckpt,
            crm_steps=args.crm_steps,
            num_images=args.num_images,
            seed=args.seed,
            out=out,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
        report["design_name"] = name
        report["overrides"] = DESIGNS[name]
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        e = report["errors"]
        rows.append(
            f"| {name} | {report['crm_parameters']} | {e['truth']:.4f} | {e['own']:.4f} | "
            f"{e.get('other', float('nan')):.4f} | {e['uniform']:.4f} | "
            f"{report['informativeness']:.3f} | {report['headroom']:.3f} |"
        )
        print(rows[-1], flush=True)
    miou = report["task_metrics"].get("seg/miou")
    header = [
        f"Network: `{args.ckpt}` (val mIoU {100 * miou:.1f})" if miou is not None else "",
        "",
        "| design | CRM params | err truth | err own | err other | err uniform "
        "| informativeness | headroom |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    table = "\n".join(header + rows) + "\n"
    (args.out_dir / f"diagnose_{args.tag}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
