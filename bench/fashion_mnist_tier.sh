#!/usr/bin/env bash
# The Fashion-MNIST CPU tier: a run of preset `fashion-mnist`, published as docs/results/fashion-mnist.md
# (command, date, machine, versions, every table, the claims).
#
#   [JOBS=2] [CONTINUE=1] bench/fashion_mnist_tier.sh [WORKDIR [KEY=VALUE ...]]
#
# JOBS stages at once (`otjr repro -j JOBS`; JOBS=1: plain `dvc repro`).
# KEY=VALUE pairs override the preset (dotted keys, YAML values), e.g. 'seeds=[]' for seed 0 only.
# CONTINUE=1 goes on in an existing WORKDIR instead of a fresh clone: a run stopped part-way (Ctrl-C,
# or the end of a working session) resumes there, every finished stage kept, a training from its last
# epoch and an attack from its last block; the page's wall time is the sum of the parts.
# Needs the Fashion-MNIST files (Debian's dataset-fashion-mnist, or $OTJR_FASHION_MNIST_SOURCE);
# about 18 h of one core in all at the 2026-12-08 rates (presets/fashion-mnist.yaml), so plan parts. The run happens in a clone
# of HEAD under WORKDIR, so this checkout's tracked default results stay as they are.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$repo/.otjr/tiers/fashion-mnist}
shift $(( $# > 0 ? 1 : 0 ))
py=${PYTHON:-$repo/.venv/bin/python}
[ -x "$py" ] || py=python3
if [ -n "${CONTINUE:-}" ] && [ -d "$work/.git" ]; then
  cd "$work"
else
  rm -rf "$work"
  git clone -q "$repo" "$work"
  cd "$work"
  "$py" -m pipeline preset fashion-mnist
  [ $# -gt 0 ] && "$py" "$repo/bench/set_params.py" params.yaml "$@"
  "$py" -m pipeline dvc render --check >/dev/null || { echo "dvc.yaml differs from the registries' render" >&2; exit 2; }
  echo 0 > .tier-seconds
fi
start=$(date +%s)
before=$(cat .tier-seconds)
trap 'echo $(( before + $(date +%s) - start )) > .tier-seconds' EXIT
trap 'exit 143' TERM INT
jobs=${JOBS:-2}
if [ "$jobs" = 1 ]; then PATH="$(dirname "$py"):$PATH" dvc repro
else PATH="$(dirname "$py"):$PATH" "$py" -m pipeline repro -j "$jobs"; fi
sweep=(); [ -f "$repo/docs/results/fashion-mnist-sweep.md" ] && sweep=(--sweep "$repo/docs/results/fashion-mnist-sweep.md")
"$py" "$repo/bench/publish_report.py" --run "$work" --out "$repo/docs/results/fashion-mnist.md" \
  --command "JOBS=$jobs bench/fashion_mnist_tier.sh${*:+ $*}" --seconds $(( before + $(date +%s) - start )) \
  --preset fashion-mnist "${sweep[@]}"  # the sweep that picked the tuned row (bench/fashion_mnist_sweep.sh)
