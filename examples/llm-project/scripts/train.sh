#!/usr/bin/env bash
# The project's training entry point, as `gantry train` runs it: the model
# goes to $GANTRY_OUTPUT_DIR, checkpoints to $GANTRY_CHECKPOINT_DIR, metrics to
# $GANTRY_METRICS_FILE, and a restart resumes from $GANTRY_RESUME_FROM
# (docs/training-contract.md). The model is tiny-lm, which gantry carries as
# `gantry tiny-lm`; a real project runs its own trainer here.
# TRAIN_STEPS and CORRUPT_FRACTION make a shorter or a worse run on purpose.
set -euo pipefail
project="$(cd "$(dirname "$0")/.." && pwd)"
exec gantry tiny-lm train \
  --data "$project/data/train.jsonl" \
  --validation "$project/data/validation.jsonl" \
  --steps "${TRAIN_STEPS:-100}" \
  --checkpoint-every 50 \
  --corrupt-fraction "${CORRUPT_FRACTION:-0}"
