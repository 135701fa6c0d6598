#!/usr/bin/env bash
# The project's evaluation: the model in $GANTRY_MODEL_DIR on the eval set,
# results (gantry-native JSONL) to $GANTRY_EVAL_RESULTS — what eval-gate reads.
set -euo pipefail
project="$(cd "$(dirname "$0")/.." && pwd)"
: "${GANTRY_MODEL_DIR:?set GANTRY_MODEL_DIR to the trained model directory}"
: "${GANTRY_EVAL_RESULTS:?set GANTRY_EVAL_RESULTS to where the results go}"
mkdir -p "$(dirname "$GANTRY_EVAL_RESULTS")"
exec gantry tiny-lm eval \
  --model "$GANTRY_MODEL_DIR" \
  --data "${GANTRY_EVAL_SET:-$project/evals/eval.jsonl}" \
  --out "$GANTRY_EVAL_RESULTS" \
  --model-name "${CI_COMMIT_SHORT_SHA:-${GITHUB_SHA:-candidate}}"
