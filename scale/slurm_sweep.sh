#!/usr/bin/env bash
# The sweep as a Slurm job array, for clusters without Dask: one array task per shard, then the
# merge once every shard has succeeded. Submit from the repository, on storage every node sees
# (the binary, pipelines/, data/ and the output root):
#
#   jid=$(sbatch --parsable --array=0-9 scale/slurm_sweep.sh shard)   # 10 shards
#   sbatch --dependency=afterok:$jid scale/slurm_sweep.sh merge
#
# `afterok` starts the merge only when every array task exited 0, and `mode sweep --merge`
# refuses a missing or conflicting part itself. A task on a node that fails is requeued
# (--requeue). MODE_ARGS is the mode command line without --shard/--merge (an ablation:
# "--pipeline pipelines/mnist.toml --threads 1 ablate"); BIN the binary.
#SBATCH --job-name=mode-sweep
#SBATCH --cpus-per-task=1
#SBATCH --time=01:00:00
#SBATCH --requeue
#SBATCH --output=slurm-%x-%A_%a.out
set -euo pipefail
BIN=${BIN:-target/release/mode}
MODE_ARGS=${MODE_ARGS:---pipeline pipelines/mnist.toml --threads 1 sweep --seeds 10 --arms all}
case "${1:-}" in
  # shellcheck disable=SC2086 # MODE_ARGS is a command line: split it into words
  shard) exec "$BIN" $MODE_ARGS --shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" ;;
  # shellcheck disable=SC2086
  merge) exec "$BIN" $MODE_ARGS --merge ;;
  *)
    echo "usage: sbatch --array=0-<N-1> $0 shard; then sbatch --dependency=afterok:<job id> $0 merge" >&2
    exit 2
    ;;
esac
