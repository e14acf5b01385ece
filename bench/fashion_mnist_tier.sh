#!/usr/bin/env bash
# The Fashion-MNIST CPU tier in one command: a fresh run of preset `fashion-mnist`, published
# as docs/results/fashion-mnist.md (command, date, machine, versions, every table, the claims).
#
#   [JOBS=2] bench/fashion_mnist_tier.sh [WORKDIR [KEY=VALUE ...]]
#
# JOBS stages at once (`otjr repro -j JOBS`; JOBS=1: plain `dvc repro`).
# KEY=VALUE pairs override the preset (dotted keys, YAML values), e.g. 'seeds=[]' for seed 0 only.
# Needs the Fashion-MNIST files (Debian's dataset-fashion-mnist, or $OTJR_FASHION_MNIST_SOURCE);
# about 1-2 h on 2 CPU cores (docs/results/fashion-mnist-tiers.md). The run happens in a clone of
# HEAD under WORKDIR, so this checkout's tracked default results stay as they are.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$repo/.otjr/tiers/fashion-mnist}
shift $(( $# > 0 ? 1 : 0 ))
py=${PYTHON:-$repo/.venv/bin/python}
[ -x "$py" ] || py=python3
rm -rf "$work"
git clone -q "$repo" "$work"
cd "$work"
"$py" -m pipeline preset fashion-mnist
for kv in "$@"; do
  "$py" - "$kv" <<'PY'
import sys
from ruamel.yaml import YAML
key, _, value = sys.argv[1].partition("=")
yaml = YAML()
params = yaml.load(open("params.yaml"))
node = params
*parents, last = key.split(".")
for p in parents:
    node = node[p]
node[last] = YAML(typ="safe").load(value)
yaml.dump(params, open("params.yaml", "w"))
PY
done
"$py" -m pipeline dvc render --check >/dev/null || { echo "dvc.yaml differs from the registries' render" >&2; exit 2; }
start=$(date +%s)
jobs=${JOBS:-2}
if [ "$jobs" = 1 ]; then PATH="$(dirname "$py"):$PATH" dvc repro
else PATH="$(dirname "$py"):$PATH" "$py" -m pipeline repro -j "$jobs"; fi
"$py" "$repo/bench/publish_report.py" --run "$work" --out "$repo/docs/results/fashion-mnist.md" \
  --command "JOBS=$jobs bench/fashion_mnist_tier.sh${*:+ $*}" --seconds $(( $(date +%s) - start )) --preset fashion-mnist
