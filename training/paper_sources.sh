#!/usr/bin/env bash
# The notmnist-7x7 and notmnist-5x5 priors from source nets trained as the paper's appendix H.2 says: widths
# 256/512, 100 epochs, batch 256, Adam lr 1e-3 decaying linearly to 0, Xavier-normal init, and L2 1e-3 on the
# conv layers' weights and biases only (the original train-net.py penalises net.features.parameters()).
#
#     training/paper_sources.sh [OUT]          # default OUT: build/paper
#
# NETS source nets (default 6, the last held out) train at once, one process each: on one GPU the processes share
# it; on a CPU give NETS=2 or run it in the background, it is resumable (rerun the same command). Then both priors
# are fitted at once. EPOCHS and WIDTHS override the paper's values (a quick check: EPOCHS=1 WIDTHS=8,16);
# MIXED_PRECISION=bf16 passes --mixed-precision bf16 to the build. FIRST_SEED=S seeds the nets S, S+1, …: machines
# that share no files (GPU leases) each train their own nets, and dense_vae.py --kernel-set pools their kernel sets.
set -euo pipefail
out=${1:-build/paper}
nets=${NETS:-6}
python=${PYTHON:-python}
settings=(--source-set widths="${WIDTHS:-256,512}" --source-set epochs="${EPOCHS:-100}" --source-set batch_size=256
          --source-set lr=1e-3 --source-set l2=1e-3 --source-set l2_on=features --source-set init=xavier
          --source-set num_nets="$nets" --source-set heldout_nets=1 --mixed-precision "${MIXED_PRECISION:-no}")
if [ -n "${FIRST_SEED:-}" ]; then settings+=(--source-set first_seed="$FIRST_SEED"); fi
mkdir -p "$out/logs"
start=$(date +%s)
pids=()
for i in $(seq "$nets"); do
    "$python" -m training build notmnist-7x7 --out "$out" "${settings[@]}" --sources-only --no-progress \
        >"$out/logs/sources-$i.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
echo "source nets: $(( $(date +%s) - start )) s"
pids=()
for prior in notmnist-7x7 notmnist-5x5; do
    "$python" -m training build "$prior" --out "$out" "${settings[@]}" --no-progress >"$out/logs/$prior.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
echo "source nets and priors: $(( $(date +%s) - start )) s"
