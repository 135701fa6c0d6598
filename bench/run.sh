#!/usr/bin/env bash
# gantry's benchmark runner: times gantry and a named peer in the same run with
# hyperfine and prints medians and ratios. Results go to BENCHMARKS.md by hand,
# with the machine they ran on. Run with `cargo xtask bench` (or this script).
#
# Peers are installed into bench/.peers (ignored by git) on first use:
#   mlflow 3.17.2 (PyPI)  - `python -c "import mlflow"`, what a Python MLOps step pays before it starts
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${BENCH_RUNS:-30}"
peers=bench/.peers
out=bench/results
mkdir -p "$peers" "$out"

command -v hyperfine > /dev/null || { echo "bench: hyperfine is missing (apt-get install hyperfine)" >&2; exit 2; }
cargo build --release --locked -p gantry-cli --quiet
gantry="$PWD/target/release/gantry"

if [ ! -x "$peers/mlflow/bin/python" ]; then
  python3 -m venv "$peers/mlflow"
  "$peers/mlflow/bin/pip" install --quiet --disable-pip-version-check mlflow==3.17.2
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
printf '# Eval gate\n\n| metric | delta |\n|---|---|\n| accuracy | +0.4 |\n' > "$scratch/report.md"

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
