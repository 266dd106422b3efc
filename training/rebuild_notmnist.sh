#!/bin/bash
# Refit the shipped notmnist-7x7 and notmnist-5x5 priors from the source kernels kept in the repository.
#
#   bash training/rebuild_notmnist.sh [OUT]     (from the repository root, venv active; default OUT build/rebuild-notmnist)
#
# Each fit is deterministic on a CPU: rerun, it gives the shipped weights (the 7x7's 30,000 steps in about 15
# minutes, the 5x5's 100,000 in about an hour, on one core each). The fitted folders land in
# OUT/notmnist-7x7-vae-30000-d4-constant-lr-z2/ and OUT/notmnist-5x5-dense-100000/;
# `python -m training bundle FOLDER --name dwp/notmnist-7x7` ships one.
#
# The kernel files (training/results/source-kernels/) are every kernel of one conv layer of a source net, exported by
# `python -m training.experiments.export_kernels --net NET --layer features.0 --kernel-size 7` (features.3 and 5 for
# 5x5), from these source nets, all the paper's fconv-mnist protocol at widths 32/64 (Xavier init, Adam 1e-3 decaying
# to 0, batch 256, L2 1e-3 on the conv layers) on the build's notMNIST-style renders:
#   net-0200/0201-7x7      100 epochs, all fonts: python -m training build notmnist-7x7 --out build/cpu32
#                          --source-set widths=32,64 --source-set epochs=100 --source-set batch_size=256
#                          --source-set lr=1e-3 --source-set l2=1e-3 --source-set l2_on=features --source-set init=xavier
#                          --source-set num_nets=2 --source-set heldout_nets=1 --source-set first_seed=200 --sources-only
#   net-0300/0301-5x5      the same for 30 epochs with first_seed=300 (out build/e30)
#   heavy/light-net-0200   200 epochs on one half of the fonts by ink fraction
#                          (python -m training.experiments.font_split --out build/font-split, then the build command
#                          above with --font-dir build/font-split/heavy, resp. light, and epochs=200)
#   glyph-*-5x5            python -m training.glyph_variants VARIANT 30 SEED, for base 0, base 1, shift6 0, 28 0, 20 0,
#                          invert25 0, invert50 0 and labels20 0
#   gpu-net2-heldout-*     the held-out kernels: those of the paper recipe's held-out source net, kept by the build's
#                          norm threshold (export_kernels --kernel-set KERNELS --part heldout --as heldout)
# The nets' records (nets.json, e30-nets.json, font-split-nets.json, glyph-nets.json) and the renders' record
# (data.json) are what the priors' provenance and cards cite.
set -euo pipefail
OUT=${1:-build/rebuild-notmnist}
K=training/results/source-kernels
S7=$K/notmnist-7x7 S5=$K/notmnist-5x5
FIT="python -m training.experiments.dense_vae --out $OUT --priors ''"

eval "$FIT --architectures vae --threads 1 --steps 30000 --batch 128 --z-dim 2 --augment d4 --lr-schedule constant \
    --sources $S7/nets.json --kernel-set notmnist-7x7=$S7/net-0200-7x7.safetensors+$S7/net-0201-7x7.safetensors+$S7/gpu-net2-heldout-7x7.safetensors"

KERNELS5=$S5/glyph-base-5x5.safetensors+$S5/glyph-base-s1-5x5.safetensors+$S5/net-0300-5x5.safetensors
KERNELS5=$KERNELS5+$S5/net-0301-5x5.safetensors+$S5/heavy-net-0200-5x5.safetensors+$S5/light-net-0200-5x5.safetensors
KERNELS5=$KERNELS5+$S5/glyph-shift6-5x5.safetensors+$S5/glyph-28-5x5.safetensors+$S5/glyph-20-5x5.safetensors
KERNELS5=$KERNELS5+$S5/glyph-invert25-5x5.safetensors+$S5/glyph-invert50-5x5.safetensors
KERNELS5=$KERNELS5+$S5/glyph-labels20-5x5.safetensors+$S5/gpu-net2-heldout-5x5.safetensors
eval "$FIT --architectures dense --threads 1 --steps 100000 --sources $S5/glyph-nets.json --sources $S5/e30-nets.json \
    --sources $S5/font-split-nets.json --kernel-set notmnist-5x5=$KERNELS5"
