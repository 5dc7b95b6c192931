#!/usr/bin/env bash
# End-to-end wall times for `make bench` (median of RUNS runs each), on scratch roots:
#   - the split stage alone: idx → three Parquet files (one process)
#   - the seed loop: split + train + evaluate + experiment --arms mode-dot,random (4 processes,
#     every stage's Parquet artifacts written and read back)
#   - the same loop in one process, in memory, as the Keras reference runs it (no artifacts):
#     `mode sweep --seeds 1 --arms mode-dot,random` (the sweep's seed 0 derives the split and
#     weight seeds from the master seed, so its numbers differ from the chain's; the work is
#     the same: idx → split → train → evaluate → 5 iterations of both arms)
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

# A virtual machine that reports freed memory to its host (virtio-balloon free page reporting)
# makes every newly touched page a host fault: 2-4 s of make all on this project's machines
# (docs/speed.md, stop 35). Say whether this machine does, so its figures can be compared.
# The kernel counts what it has reported since boot; a kernel without a reporting balloon
# device has the parameters too, and reports nothing.
reported=$(cat /sys/module/page_reporting/parameters/reported_kib 2>/dev/null || echo 0)
reporting=""
if [ "$reported" -gt 0 ]; then
  reporting="free page reporting to the host on ($((reported >> 20)) GiB reported since boot); "
fi
echo "== end to end on pipelines/$PIPELINE.toml ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg); ${reporting}burn's Flex backend; wall times) =="
split=""; loop=""; nols=""; mem=""; memnols=""; all=""
for i in $(seq "$RUNS"); do
  split+="$(secs "$BIN" -q --pipeline "pipelines/$PIPELINE.toml" --root "$TMP/split-$i" split)"$'\n'
  root="$TMP/loop-$i"; M="$BIN -q --pipeline pipelines/$PIPELINE.toml --root $root"
  loop+="$(secs bash -c "$M split && $M train && $M evaluate && $M experiment --arms mode-dot,random")"$'\n'
  root="$TMP/nols-$i"; M="$BIN -q --pipeline pipelines/$PIPELINE.toml --root $root"
  nols+="$(secs bash -c "$M split && $M train && $M evaluate && $M experiment --arms mode-dot-nols,random")"$'\n'
  mem+="$(secs "$BIN" -q --pipeline "pipelines/$PIPELINE.toml" --root "$TMP/mem-$i" sweep --seeds 1 --arms mode-dot,random)"$'\n'
  memnols+="$(secs "$BIN" -q --pipeline "pipelines/$PIPELINE.toml" --root "$TMP/memnols-$i" sweep --seeds 1 --arms mode-dot-nols,random)"$'\n'
  all+="$(secs make --no-print-directory all PIPELINE="$PIPELINE" OUT="$TMP/all-$i" BIN="$BIN" CARGO_BUILD=true)"$'\n'
done
report "split (idx → three Parquet files)" "${split%$'\n'}"
report "seed loop with layer selection (mode-dot, random)" "${loop%$'\n'}"
report "seed loop without layer selection (-nols, random)" "${nols%$'\n'}"
report "seed loop in one process, with LS (sweep 1)" "${mem%$'\n'}"
report "seed loop in one process, without LS" "${memnols%$'\n'}"
report "make all (every arm, tables, report)" "${all%$'\n'}"
# The Keras/TensorFlow reference in the same sitting (bench/keras_reference.py; its virtual
# environment under target/keras-venv, made by `make bench-keras`), and the ratios.
KERAS_PY=${KERAS_PY:-target/keras-venv/bin/python}
if [ "$PIPELINE" = mnist ] && [ -x "$KERAS_PY" ]; then
  "$KERAS_PY" bench/keras_reference.py --json "$TMP/keras.json" | sed 's/^/keras: /'
  python3 - "$TMP/keras.json" "$(echo "${loop%$'\n'}" | median)" "$(echo "${nols%$'\n'}" | median)" \
    "$(echo "${mem%$'\n'}" | median)" "$(echo "${memnols%$'\n'}" | median)" <<'PY'
import json, sys
k = json.load(open(sys.argv[1]))
ls, nols, mem, memnols = (float(a) for a in sys.argv[2:6])
def find(word):
    return next(v for key, v in k.items() if key.startswith("seed loop " + word))
def line(what, keras, mode):
    print(f"seed loop vs Keras, {what:<44} {keras:8.2f} s / {mode:6.2f} s = {keras / mode:5.1f}x")
# The same work on both sides: one process, nothing written (Keras' figure leaves out even
# loading and splitting the data, which mode's includes).
line("with layer selection, one process:", find("with layer"), mem)
line("without layer selection, one process:", find("without"), memnols)
# mode's four stage processes, each writing its Parquet artifacts and reading the last one's.
line("with layer selection, four stages:", find("with layer"), ls)
line("without layer selection, four stages:", find("without"), nols)
PY
else
  echo "(Keras reference skipped: make bench-keras installs it into target/keras-venv)"
fi
for t in 1 2; do
  s=$(secs "$BIN" -q --threads "$t" --pipeline "pipelines/$PIPELINE.toml" --root "$TMP/sweep-$t" sweep --seeds "$SWEEP_SEEDS" --arms "$SWEEP_ARMS")
  printf '%-46s %9.3f s\n' "sweep $SWEEP_SEEDS seeds × $SWEEP_ARMS, --threads $t" "$s"
done
