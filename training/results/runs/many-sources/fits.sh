#!/bin/bash
# Session 33 (issue #12): the priors fitted to pooled source kernels, as screened in fig2-narrow-screen/.
#   bash training/results/runs/many-sources/fits.sh   (from the repository root, venv active; about an hour, one core)
# Each fit is deterministic: rerun, it gives the same weights. Folders go to build/s33/, rows to their fits.csv
# (collected, with the fit seed, in fits.csv here).
set -euo pipefail
R=training/results/runs G=$R/glyph-size N=$R/narrow-sources
FIT="python -m training.experiments.dense_vae --priors '' --threads 1"
# 5x5: every second-layer kernel of twelve 32/64 source nets (README, session 33), GPU net 2's kept kernels held out.
PLAIN6=$G/glyph-base-5x5.safetensors+$G/glyph-base-s1-5x5.safetensors+$G/build-e30/net-0300-5x5.safetensors
PLAIN6=$PLAIN6+$G/build-e30/net-0301-5x5.safetensors+$N/heavy-net-0200-5x5.safetensors+$N/light-net-0200-5x5.safetensors
POOL12=$PLAIN6+$G/glyph-shift6-5x5.safetensors+$G/glyph-28-5x5.safetensors+$G/glyph-20-5x5.safetensors
POOL12=$POOL12+$G/glyph-invert25-5x5.safetensors+$G/glyph-invert50-5x5.safetensors+$G/glyph-labels20-5x5.safetensors
HELD5=$N/gpu-net2-heldout-5x5.safetensors
eval "$FIT --out build/s33/pool --architectures dense --steps 10000 --kernel-set pool12-5x5=$POOL12+$HELD5"
eval "$FIT --out build/s33/pool --architectures dense --steps 100000 --kernel-set pool12-5x5=$POOL12+$HELD5"
for s in 1 2 3; do
    eval "$FIT --out build/s33/pool-s$s --architectures dense --steps 100000 --seed $s \
        --kernel-set pool12-5x5=$POOL12+$HELD5"
done
eval "$FIT --out build/s33/plain --architectures dense --steps 100000 --kernel-set plain6-5x5=$PLAIN6+$HELD5"
eval "$FIT --out build/s33/poolvae --architectures vae --steps 10000 --kernel-set pool12-5x5=$POOL12+$HELD5"
# 7x7: first-layer kernels of the nets trained 100 epochs or more (p7a), then with six 30-epoch nets too (p7all);
# paper-sources-gpu/kernels-7x7 holds GPU nets 0-1 (train) and net 2 (held out).
P7A=$R/cpu-sources/net-0200-7x7.safetensors+$R/cpu-sources/net-0201-7x7.safetensors
P7A=$P7A+$R/cpu-sources/net-0100-7x7.safetensors+$R/fontsel/heavy-net-0200-7x7.safetensors
P7A=$P7A+$R/fontsel/light-net-0200-7x7.safetensors+$R/paper-sources-gpu/kernels-7x7.safetensors
P7ALL=$P7A+$G/build-e30/net-0300-7x7.safetensors+$G/build-e30/net-0301-7x7.safetensors
P7ALL=$P7ALL+$G/glyph-invert25-7x7.safetensors+$G/glyph-invert50-7x7.safetensors
P7ALL=$P7ALL+$G/glyph-labels20-7x7.safetensors+$G/glyph-standard-7x7.safetensors
SEVEN="--architectures dense --batch 32 --augment d4 --z-dim 8"
eval "$FIT --out build/s33/p7 $SEVEN --steps 10000 --kernel-set p7a-7x7=$P7A"
eval "$FIT --out build/s33/p7 $SEVEN --steps 10000 --kernel-set p7all-7x7=$P7ALL"
eval "$FIT --out build/s33/p7 $SEVEN --steps 50000 --kernel-set p7all-7x7=$P7ALL"
