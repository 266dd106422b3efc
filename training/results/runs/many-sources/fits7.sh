#!/bin/bash
# Sessions 34-35 (issue #12): 7x7 priors screened beside the shipped 5x5 in fig2-narrow-screen/.
# Session 34 (n4-s*-7-pool12, all32-s*-7-pool12), 10,000 steps: n4, the first-layer kernels of the four 32/64
# all-fonts 100-epoch nets 200-203 of cpu-sources/, fit seeds 0-2; all32, the shipped 7x7's recipe (nets 200-201)
# refitted with fit seeds 1 and 2.
# Session 35 (all32-30k-s*-7-pool12, all32-100k-s*-7-pool12, n4-100k-s*-7-pool12): all32 fitted 30,000 and
# 100,000 steps, n4 100,000 steps, fit seeds 0-2 each (a later --steps overrides the 10,000 in $FIT).
#   bash training/results/runs/many-sources/fits7.sh   (from the repository root, venv active; about 45 minutes)
# Folders go to build/s34/ and build/s35/; the rows are in fits7.csv here.
set -euo pipefail
R=training/results/runs N=training/results/runs/narrow-sources
FIT="python -m training.experiments.dense_vae --priors '' --threads 1 --architectures dense --steps 10000 --batch 32"
FIT="$FIT --augment d4 --z-dim 8"
ALL32=$R/cpu-sources/net-0200-7x7.safetensors+$R/cpu-sources/net-0201-7x7.safetensors
N4=$ALL32+$R/cpu-sources/net-0202-7x7.safetensors+$R/cpu-sources/net-0203-7x7.safetensors
HELD7=$N/gpu-net2-heldout-7x7.safetensors
for s in 0 1 2; do
    eval "$FIT --out build/s34/n4-s$s --seed $s --kernel-set n4-7x7=$N4+$HELD7"
done
for s in 1 2; do
    eval "$FIT --out build/s34/all32-s$s --seed $s --kernel-set all32-7x7=$ALL32+$HELD7"
done
for s in 0 1 2; do
    for steps in 30000 100000; do
        eval "$FIT --steps $steps --out build/s35/all32-$steps-s$s --seed $s --kernel-set all32-7x7=$ALL32+$HELD7"
    done
    eval "$FIT --steps 100000 --out build/s35/n4-100000-s$s --seed $s --kernel-set n4-7x7=$N4+$HELD7"
done
