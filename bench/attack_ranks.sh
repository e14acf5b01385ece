#!/usr/bin/env bash
# The attack stage's wall time in one process and over torchrun ranks, alternated, on a project that has the run's
# checkpoint (e.g. after `dvc repro`):
#
#   [RANKS="1 2"] bench/attack_ranks.sh PROJECT [RUN [DATASET [REPEATS]]]     (default: pgd_at digits 2)
#
# Each repeat runs every entry of $RANKS once, in turn: 1 is `otjr stage attack` (its `attack.workers`), K > 1 is
# `torchrun --nproc_per_node K`; every process on one torch thread. Prints one TSV line per run (ranks, repeat, wall s,
# load average before) and checks that each record equals the first but for the ranks and devices it states.
# The stage rewrites the project's record (same bytes for a 1-rank run).
set -euo pipefail
project=$(cd "${1:?usage: [RANKS=\"1 2\"] bench/attack_ranks.sh PROJECT [RUN [DATASET [REPEATS]]]}" && pwd)
run=${2:-pgd_at}
dataset=${3:-digits}
repeats=${4:-2}
read -ra settings <<< "${RANKS:-1 2}"
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
[ -x "$py" ] || py=python3
export PYTHONPATH="$repo" OTJR_ROOT="$project" OMP_NUM_THREADS=1
record="$project/metrics/attacks/$dataset/$run.json"
first=$(mktemp)
trap 'rm -f "$first"' EXIT
printf "ranks\trepeat\twall_s\tload\n"
for repeat in $(seq 1 "$repeats"); do
  for ranks in "${settings[@]}"; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    start=$(date +%s.%N)
    if [ "$ranks" = 1 ]; then
      (cd "$project" && "$py" -m pipeline stage attack --dataset "$dataset" --method "$run" >/dev/null)
    else
      (cd "$project" && "$py" -m torch.distributed.run --standalone --nproc_per_node="$ranks" \
        -m pipeline stage attack --dataset "$dataset" --method "$run" >/dev/null 2>&1)
    fi
    printf "%s\t%s\t%.1f\t%s\n" "$ranks" "$repeat" "$(echo "$(date +%s.%N) - $start" | bc)" "$load"
    "$py" - "$record" "$first" <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))
record["evaluation"].pop("ranks"), record.pop("device")
try:
    first = json.load(open(sys.argv[2]))
except ValueError:
    json.dump(record, open(sys.argv[2], "w"))
    sys.exit()
sys.exit(0 if record == first else "the record differs from the first run's")
PY
  done
done
