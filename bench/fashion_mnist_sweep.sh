#!/usr/bin/env bash
# OTJR's hyper-parameter sweep (paper Table 8) on the Fashion-MNIST CPU tier, on the validation split,
# published as docs/results/fashion-mnist-sweep.md with the setting it picks.
#
#   [JOBS=2] bench/fashion_mnist_sweep.sh [WORKDIR [KEY=VALUE ...]]
#
# KEY=VALUE pairs override the preset (dotted keys, YAML values), e.g. train.epochs=1 for a smoke run.
# Preset fashion-mnist-sweep (XE and OTJR seed 0, eval_split: val) in a clone of HEAD under WORKDIR:
# `otjr repro -j JOBS` (JOBS=1: `dvc repro`) of the paper's values (lambda_J 0.002, lambda_SW 64, K 32), committed as the baseline,
# then one `dvc exp run` per other value, one factor at a time (lambda_J 0, 0.01, 0.05; lambda_SW 8, 32;
# K 16, 64), JOBS experiments at once through DVC's queue, then `otjr stage sensitivity`.
# Needs the Fashion-MNIST files (Debian's dataset-fashion-mnist, or $OTJR_FASHION_MNIST_SOURCE).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$repo/.otjr/tiers/fashion-mnist-sweep}
shift $(( $# > 0 ? 1 : 0 ))
jobs=${JOBS:-2}
py=${PYTHON:-$repo/.venv/bin/python}
[ -x "$py" ] || py=python3
export PATH="$(dirname "$py"):$PATH"
rm -rf "$work"
git clone -q "$repo" "$work"
cd "$work"
git() { command git -c user.name=otjr -c user.email=otjr@localhost "$@"; }
start=$(date +%s)
"$py" -m pipeline preset fashion-mnist-sweep
[ $# -gt 0 ] && "$py" "$repo/bench/set_params.py" params.yaml "$@"
if [ "$jobs" = 1 ]; then dvc repro; else "$py" -m pipeline repro -j "$jobs"; fi
git add -A && git commit -qm "sweep baseline: lambda_J 0.002, lambda_SW 64, K 32 (eval_split: val)"
for setting in lambda_j=0 lambda_j=0.01 lambda_j=0.05 lambda_sw=8 lambda_sw=32 num_projections=16 \
               num_projections=64; do
  dvc exp run --queue -n "${setting/=/-}" -S "$setting"
done
dvc queue start -j "$jobs"
queue() { dvc queue status 2>&1; }  # captured whole: `grep -q` on a pipe would end it early under pipefail
while grep -qE "Queued|Running" <<< "$(queue)"; do sleep 30; done
queue
if grep -q Failed <<< "$(queue)"; then echo "an experiment failed: dvc queue logs NAME" >&2; exit 1; fi
"$py" -m pipeline stage sensitivity >/dev/null
"$py" "$repo/bench/publish_report.py" --run "$work" --out "$repo/docs/results/fashion-mnist-sweep.md" \
  --report metrics/sensitivity.md --command "JOBS=$jobs bench/fashion_mnist_sweep.sh${*:+ $*}" \
  --seconds $(( $(date +%s) - start )) --preset fashion-mnist-sweep
cp metrics/sensitivity.json "$repo/docs/results/fashion-mnist-sweep.json"
