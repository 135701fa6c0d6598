#!/usr/bin/env bash
# gantry's benchmark runner: times gantry and a named peer in the same run with
# hyperfine and prints medians and ratios. Results go to BENCHMARKS.md by hand,
# with the machine they ran on. Run with `cargo xtask bench` (or this script).
#
# Peers are installed into bench/.peers (ignored by git) on first use:
#   mlflow 3.17.2 (PyPI)  - `python -c "import mlflow"`, what a Python MLOps step pays before it starts
#   pandas, polars (PyPI) - bench/peers/validate_chat.py: validate-data's tier-0 checks, written idiomatically
#
# BENCH_SECTIONS picks sections (default: "startup validate-data");
# BENCH_DATA_MB sizes the generated dataset (default 1024).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${BENCH_RUNS:-30}"
sections="${BENCH_SECTIONS:-startup validate-data}"
data_mb="${BENCH_DATA_MB:-1024}"
peers=bench/.peers
out=bench/results
mkdir -p "$peers" "$out"

command -v hyperfine > /dev/null || { echo "bench: hyperfine is missing (apt-get install hyperfine)" >&2; exit 2; }
cargo build --release --locked -p gantry-cli --quiet
gantry="$PWD/target/release/gantry"

section() { case " $sections " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if section startup && [ ! -x "$peers/mlflow/bin/python" ]; then
  python3 -m venv "$peers/mlflow"
  "$peers/mlflow/bin/pip" install --quiet --disable-pip-version-check mlflow==3.17.2
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
printf '# Eval gate\n\n| metric | delta |\n|---|---|\n| accuracy | +0.4 |\n' > "$scratch/report.md"

if section startup; then
echo "== cold start: gantry --version vs python -c 'import mlflow'"
hyperfine --warmup 3 --runs "$runs" --export-json "$out/startup.json" --shell=none \
  "$gantry --version" \
  "$peers/mlflow/bin/python -c 'import mlflow'"

echo "== one command: gantry report (summary to a file) vs import mlflow"
hyperfine --warmup 3 --runs "$runs" --export-json "$out/report.json" \
  --prepare "rm -rf $scratch/.gantry" \
  "cd $scratch && $gantry report --file report.md --publish summary" \
  "$peers/mlflow/bin/python -c 'import mlflow'"

python3 - "$out/startup.json" "$out/report.json" <<'PY'
import json, sys
for path in sys.argv[1:]:
    results = json.load(open(path))["results"]
    base = results[0]["median"]
    print(path)
    for result in results:
        print(f"  {result['command'][:70]:70s} median {result['median'] * 1000:8.2f} ms  x{result['median'] / base:7.1f}")
PY

echo "== footprint"
du -sh "$gantry" "$peers/mlflow" | sed 's/^/  /'
if command -v podman > /dev/null && podman image exists localhost/gantry:conformance 2> /dev/null; then
  printf '  image localhost/gantry:conformance (minimal): '
  podman image inspect localhost/gantry:conformance --format '{{.Size}}' | awk '{printf "%.1f MB\n", $1 / 1e6}'
fi
fi

if section validate-data; then
  if [ ! -x "$peers/dataframes/bin/python" ]; then
    python3 -m venv "$peers/dataframes"
    "$peers/dataframes/bin/pip" install --quiet --disable-pip-version-check pandas polars
  fi
  data="$peers/chat-${data_mb}mb.jsonl"
  [ -f "$data" ] || python3 bench/generate_chat.py "$data" "$data_mb" 7
  eval_set="$peers/eval-10k.jsonl"
  [ -f "$eval_set" ] || python3 bench/generate_chat.py "$eval_set" 9 11
  printf '[checks.near-duplicates]\nenabled = false\n[checks.normalized-duplicates]\nenabled = false\n[checks.secrets]\nenabled = false\n[checks.pii]\nenabled = false\n' > "$scratch/tier0.toml"
  tier0="$gantry --quiet --format json validate-data --data $data --tokenizer chars --policy $scratch/tier0.toml --publish summary --out $scratch/tier0"
  full="$gantry --quiet --format json validate-data --data $data --eval-set $eval_set --publish summary --out $scratch/full"
  echo "== validate-data on $(du -h "$data" | cut -f1) of openai-chat JSONL"
  echo "-- peak RSS (KB) and counts, one run each"
  for command in "wc -l $data" "$tier0" "$full" "$peers/dataframes/bin/python bench/peers/validate_chat.py polars $data" "$peers/dataframes/bin/python bench/peers/validate_chat.py pandas $data"; do
    /usr/bin/time -f "  %M KB peak, %e s: $command" sh -c "$command > /dev/null" 2>&1 | tail -1
  done
  hyperfine --warmup 1 --runs 3 --export-json "$out/validate-data.json" \
    "wc -l $data" "$tier0" "$full" \
    "$peers/dataframes/bin/python bench/peers/validate_chat.py polars $data" \
    "$peers/dataframes/bin/python bench/peers/validate_chat.py pandas $data"
  python3 - "$out/validate-data.json" "$(stat -c %s "$data")" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
size = int(sys.argv[2])
names = ["wc -l", "gantry tier 0", "gantry all checks", "polars tier 0", "pandas tier 0"]
base = results[1]["median"]
for name, result in zip(names, results):
    print(f"  {name:20s} median {result['median']:8.2f} s  {size / result['median'] / 1e6:8.0f} MB/s  x{result['median'] / base:6.2f} of gantry tier 0")
PY
fi
