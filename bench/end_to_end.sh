#!/usr/bin/env bash
# End-to-end wall times for `make bench` (median of RUNS runs each), on scratch roots:
#   - the split stage alone: idx → three Parquet files (one process)
#   - the seed loop: split + train + evaluate + experiment --arms mode-dot,random (4 processes)
#   - make all (every arm, the tables and the report)
#   - a sweep (SWEEP_SEEDS seeds, SWEEP_ARMS) with --threads 1 and --threads 2: the scaling
# Usage: bench/end_to_end.sh [PIPELINE]   (RUNS=3 SWEEP_SEEDS=4 SWEEP_ARMS=core by default)
set -euo pipefail
cd "$(dirname "$0")/.."
PIPELINE=${1:-mnist}
RUNS=${RUNS:-3}
SWEEP_SEEDS=${SWEEP_SEEDS:-4}
SWEEP_ARMS=${SWEEP_ARMS:-core}
BIN=${BIN:-target/release/mode}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { local t0; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; awk -v a="$(date +%s.%N)" -v b="$t0" "BEGIN { print a - b }"; }
report() { printf '%-46s %9.3f s   (median of %s; %s)\n' "$1" "$(echo "$2" | median)" "$RUNS" "$(echo "$2" | tr '\n' ' ')"; }

echo "== end to end on pipelines/$PIPELINE.toml (2 cores; wall times) =="
split=""; loop=""; all=""
for i in $(seq "$RUNS"); do
  split+="$(secs "$BIN" -q --pipeline "pipelines/$PIPELINE.toml" --root "$TMP/split-$i" split)"$'\n'
  root="$TMP/loop-$i"; M="$BIN -q --pipeline pipelines/$PIPELINE.toml --root $root"
  loop+="$(secs bash -c "$M split && $M train && $M evaluate && $M experiment --arms mode-dot,random")"$'\n'
  all+="$(secs make --no-print-directory all PIPELINE="$PIPELINE" OUT="$TMP/all-$i" BIN="$BIN" CARGO_BUILD=true)"$'\n'
done
report "split (idx → three Parquet files)" "${split%$'\n'}"
report "seed loop (split, train, evaluate, 2 arms)" "${loop%$'\n'}"
report "make all (every arm, tables, report)" "${all%$'\n'}"
for t in 1 2; do
  s=$(secs "$BIN" -q --threads "$t" --pipeline "pipelines/$PIPELINE.toml" --root "$TMP/sweep-$t" sweep --seeds "$SWEEP_SEEDS" --arms "$SWEEP_ARMS")
  printf '%-46s %9.3f s\n' "sweep $SWEEP_SEEDS seeds × $SWEEP_ARMS, --threads $t" "$s"
done
