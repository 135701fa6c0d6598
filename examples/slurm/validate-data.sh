#!/usr/bin/env bash
# Validate a dataset as Slurm array jobs, in three levels:
#
#   1. shards: one task per shard, each reading every file (so each vouches
#      for the same data lock) but checking only its records;
#   2. merge partitions (PARTITIONS > 1): one task per hash bucket, each
#      taking only its bucket of every shard file's hashes and band keys, so
#      no job holds more than its share;
#   3. the final merge: the report, data lock and summary one unsharded run
#      would give, gated as that run would be.
#
# Each level starts only when every task of the one before succeeded
# (--dependency=afterok).
#
#   examples/slurm/validate-data.sh DATA [SHARDS] [OUT] [PARTITIONS]
#   WAIT=1 examples/slurm/validate-data.sh data/ 16 out 4   # block until the final merge ends; its exit code is ours
#
# gantry must be on PATH on the compute nodes, and DATA and OUT on storage
# every node sees. Extra sbatch flags (partition, account) go in SBATCH_*
# variables, which sbatch reads itself: SBATCH_PARTITION=cpu, SBATCH_ACCOUNT=ml.
set -euo pipefail
data="${1:?usage: validate-data.sh DATA [SHARDS] [OUT] [PARTITIONS]}"
shards="${2:-16}"
out="${3:-.gantry/validate-data}"
partitions="${4:-1}"
for value in "$shards" "$partitions"; do
  case "$value" in
    ''|*[!0-9]*|0) echo "validate-data.sh: SHARDS and PARTITIONS must be positive whole numbers, not '$value'" >&2; exit 2 ;;
  esac
done
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$out"
export GANTRY_DATA="$data" GANTRY_SHARDS="$shards" GANTRY_OUT="$out" GANTRY_PARTITIONS="$partitions"
array="$(sbatch --parsable --array="1-$shards" --export=ALL "$here/validate-shard.sbatch")"
array="${array%%;*}"
echo "shards: job $array (array 1-$shards)"
after="$array"
if [ "$partitions" -gt 1 ]; then
  parts="$(sbatch --parsable --array="1-$partitions" --dependency="afterok:$array" --kill-on-invalid-dep=yes \
    --export=ALL "$here/validate-partition.sbatch")"
  parts="${parts%%;*}"
  echo "merge partitions: job $parts (array 1-$partitions), after the shards"
  after="$parts"
fi
wait_flag=()
if [ "${WAIT:-0}" = 1 ]; then wait_flag=(--wait); fi
echo "final merge: after job $after, into $out"
set +e
merge="$(sbatch --parsable "${wait_flag[@]}" --dependency="afterok:$after" --kill-on-invalid-dep=yes \
  --export=ALL "$here/validate-merge.sbatch")"
code=$?
set -e
echo "merge: job ${merge%%;*}"
exit "$code"
