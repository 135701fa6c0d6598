#!/usr/bin/env bash
# Validate a dataset as a Slurm array job — one task per shard, each reading
# every file (so each vouches for the same data lock) but checking only its
# records — then merge the shards into the report, data lock and summary one
# unsharded run would give. The merge job starts only when every shard
# succeeded (--dependency=afterok on the array).
#
#   examples/slurm/validate-data.sh DATA [SHARDS] [OUT]
#   WAIT=1 examples/slurm/validate-data.sh data/ 16   # block until the merge ends; its exit code is ours
#
# gantry must be on PATH on the compute nodes, and DATA and OUT on storage
# every node sees. Extra sbatch flags (partition, account) go in SBATCH_*
# variables, which sbatch reads itself: SBATCH_PARTITION=cpu, SBATCH_ACCOUNT=ml.
set -euo pipefail
data="${1:?usage: validate-data.sh DATA [SHARDS] [OUT]}"
shards="${2:-16}"
out="${3:-.gantry/validate-data}"
case "$shards" in
  ''|*[!0-9]*|0) echo "validate-data.sh: SHARDS must be a positive whole number, not '$shards'" >&2; exit 2 ;;
esac
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$out"
export GANTRY_DATA="$data" GANTRY_SHARDS="$shards" GANTRY_OUT="$out"
array="$(sbatch --parsable --array="1-$shards" --export=ALL "$here/validate-shard.sbatch")"
array="${array%%;*}"
wait_flag=()
if [ "${WAIT:-0}" = 1 ]; then wait_flag=(--wait); fi
echo "shards: job $array (array 1-$shards); merging after it, into $out"
set +e
merge="$(sbatch --parsable "${wait_flag[@]}" --dependency="afterok:$array" --kill-on-invalid-dep=yes \
  --export=ALL "$here/validate-merge.sbatch")"
code=$?
set -e
echo "merge: job ${merge%%;*}"
exit "$code"
