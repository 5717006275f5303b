#!/bin/bash
# Short pilots for the 1/8-label regime: seed 100 (not a final seed), 15 epochs, warm-up scaled 414 -> 138.
cd /work/evidence
run() { name=$1; shift
  [ -f /work/runs/pilot_semi8/$name/base.safetensors ] && return
  r=""; [ -f /work/runs/pilot_semi8/$name/last.ckpt ] && r="--resume"
  OMP_NUM_THREADS=1 .venv/bin/python -m dejavu.toolkit.cli fit configs/camvid/hrnet18_semi8_dejavu.yaml --no-progress \
    --set seed=100 --set trainer.max_epochs=15 --set dejavu.regen_warmup_steps=138 \
    --set output_dir=/work/runs/pilot_semi8 --set name=$name "$@" $r > /work/runs/logs/pilot_semi8_$name.log 2>&1
}
run baseline --set dejavu.enabled=false
run w025_hard --set dejavu.regen_weight=0.25
run w1_hard
run w025_soft --set dejavu.regen_weight=0.25 --set dejavu.conditioning.hard=false
