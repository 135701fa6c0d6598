#!/usr/bin/env bash
# gantry's benchmark runner: times gantry and a named peer in the same run with
# hyperfine and prints medians and ratios. Results go to BENCHMARKS.md by hand,
# with the machine they ran on. Run with `cargo xtask bench` (or this script).
#
# Peers are installed into bench/.peers (ignored by git) on first use:
#   mlflow 3.17.2 (PyPI)  - `python -c "import mlflow"`, what a Python MLOps step pays before it starts
#   pandas, polars (PyPI) - bench/peers/validate_chat.py: validate-data's tier-0 checks, written idiomatically
#
#   huggingface_hub 2.4.0 (PyPI) - its sha256 helper (`huggingface_hub.utils.sha.sha_fileobj`), what an upload hashes with
#   oras 0.2.43 (PyPI)   - oras-py pushing the same files to the same local OCI registry
#   mlflow 3.17.2        - `mlflow.log_artifacts` to the same local MLflow server
#   datatrove 0.10.1 (PyPI) - its MinHash dedup stages (bench/peers/datatrove_minhash.py), the near-duplicate peer
#
#   nginx 1.22 (Debian nginx-light) - a weighted upstream with keepalive, the router peer; wrk (Debian) drives both
#
# BENCH_SECTIONS picks sections ("startup validate-data near-dup sharded tiny-lm eval-gate register upload train router"; default: the first two);
# BENCH_SHARDED_GB, BENCH_SHARDS and BENCH_PARTITIONS size the sharded section (20, 16, 4);
# BENCH_DATA_MB sizes the generated dataset (default 1024); BENCH_MODEL_MB the model directory (default 4096).
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

# A model directory of four equal safetensors shards of random bytes (one U8
# tensor each, so the headers are valid), `$2` MiB in all, made once.
make_model() {
  local dir="$1" total_mb="$2" bytes shard
  [ -f "$dir/model-00004-of-00004.safetensors" ] && return
  mkdir -p "$dir"
  bytes=$((total_mb / 4 * 1048576))
  for shard in 1 2 3 4; do
    python3 -c "import json, struct, sys; h = json.dumps({'w': {'dtype': 'U8', 'shape': [$bytes], 'data_offsets': [0, $bytes]}}).encode(); sys.stdout.buffer.write(struct.pack('<Q', len(h)) + h)" \
      > "$dir/model-0000$shard-of-00004.safetensors"
    head -c "$bytes" /dev/urandom >> "$dir/model-0000$shard-of-00004.safetensors"
  done
}

# A local MLflow server (SQLite, artifacts through its proxy) on a free port:
# sets mlflow_url and mlflow_pid. It runs workers as children, so
# stop_mlflow ends its whole process group.
start_mlflow() {
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$peers/mlflow/bin/mlflow" server --host 127.0.0.1 --port "$port" --workers 1 \
    --backend-store-uri "sqlite:///$scratch/mlflow-$port.db" --artifacts-destination "$scratch/artifacts-$port" > /dev/null 2>&1 &
  mlflow_pid=$!
  mlflow_url="http://127.0.0.1:$port"
  for _ in $(seq 120); do curl -fs "$mlflow_url/health" > /dev/null 2>&1 && break; sleep 0.5; done
}
stop_mlflow() { kill -- "-$mlflow_pid" 2> /dev/null || true; }

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
  # The same checks on text that takes the slower paths too (capitals,
  # punctuation, non-ASCII, tool calls, `weight`, planted PII and fake
  # credentials, so the verdict is fail: -i). No peer: this keeps gantry's own
  # fast paths honest.
  mixed_mb="${BENCH_MIXED_MB:-256}"
  mixed="$peers/chat-mixed-${mixed_mb}mb.jsonl"
  [ -f "$mixed" ] || python3 bench/generate_chat.py "$mixed" "$mixed_mb" 7 mixed
  echo "== validate-data, all checks, on $(du -h "$mixed" | cut -f1) of mixed chat JSONL"
  /usr/bin/time -f "  %M KB peak, %e s" "$gantry" --quiet --format json validate-data --data "$mixed" --eval-set "$eval_set" --publish summary --out "$scratch/mixed" > /dev/null 2> "$scratch/mixed.time" || true
  tail -1 "$scratch/mixed.time"
  hyperfine -i --warmup 1 --runs 3 --export-json "$out/validate-data-mixed.json" \
    "$gantry --quiet --format json validate-data --data $mixed --eval-set $eval_set --publish summary --out $scratch/mixed"
  python3 - "$out/validate-data-mixed.json" "$(stat -c %s "$mixed")" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))["results"][0]
print(f"  gantry all checks (mixed) median {result['median']:8.2f} s  {int(sys.argv[2]) / result['median'] / 1e6:8.0f} MB/s")
PY
fi

if section near-dup; then
  # validate-data's near-duplicate stage against datatrove's MinHash dedup
  # (signatures, buckets, clusters; 5-grams, 14 bands x 8 hashes on both
  # sides) on the first BENCH_NEARDUP_MB of the chat data. datatrove
  # parallelises over files, so it gets the data in two files.
  neardup_mb="${BENCH_NEARDUP_MB:-50}"
  if [ ! -x "$peers/datatrove/bin/python" ]; then
    python3 -m venv "$peers/datatrove"
    # The extras its reader, word tokenizer and hashing import; xxhash 3.6
    # refuses the str that datatrove 0.10.1 hashes.
    "$peers/datatrove/bin/pip" install --quiet --disable-pip-version-check \
      datatrove==0.10.1 orjson regex tokenizers spacy nltk xxhash==3.5.0
  fi
  data="$peers/chat-${data_mb}mb.jsonl"
  [ -f "$data" ] || python3 bench/generate_chat.py "$data" "$data_mb" 7
  head -c "$((neardup_mb * 1000000))" "$data" | head -n -1 > "$scratch/near.jsonl"
  mkdir -p "$scratch/near-split"
  split -n l/2 -d --additional-suffix=.jsonl "$scratch/near.jsonl" "$scratch/near-split/part-"
  printf '[checks.normalized-duplicates]\nenabled = false\n[checks.secrets]\nenabled = false\n[checks.pii]\nenabled = false\n' > "$scratch/near.toml"
  echo "== near duplicates: gantry validate-data (near-duplicates on, --tokenizer chars) vs datatrove MinHash, $(du -h "$scratch/near.jsonl" | cut -f1)"
  "$gantry" --quiet --format json validate-data --data "$scratch/near.jsonl" --tokenizer chars --policy "$scratch/near.toml" --publish summary --out "$scratch/near-out" > /dev/null || true
  python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print('  gantry: ' + str(next(c['count'] for c in r['checks'] if c['id'] == 'near-duplicates')) + ' near duplicates')" "$scratch/near-out/report.json"
  "$peers/datatrove/bin/python" bench/peers/datatrove_minhash.py "$scratch/near-split" "$scratch/dt-count" 2 2> /dev/null | grep datatrove
  hyperfine --warmup 1 --runs 3 --export-json "$out/near-dup.json" \
    --prepare "rm -rf $scratch/dt-work" \
    "$gantry --quiet --format json validate-data --data $scratch/near.jsonl --tokenizer chars --policy $scratch/near.toml --publish summary --out $scratch/near-out" \
    "$peers/datatrove/bin/python bench/peers/datatrove_minhash.py $scratch/near-split $scratch/dt-work 2"
  python3 - "$out/near-dup.json" "$(stat -c %s "$scratch/near.jsonl")" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
size = int(sys.argv[2])
base = results[0]["median"]
for name, result in zip(["gantry (near-dup on)", "datatrove MinHash"], results):
    print(f"  {name:22s} median {result['median']:8.2f} s  {size / result['median'] / 1e6:8.1f} MB/s  x{result['median'] / base:7.1f} of gantry")
PY
fi

if section sharded; then
  # validate-data at scale: BENCH_SHARDED_GB (default 20) GB of chat JSONL, in
  # one file per GB (seeds 101…), validated as BENCH_SHARDS (16) shards one
  # after another, merged by BENCH_PARTITIONS (4) merge partitions one after
  # another, then the final step. Per shard: time, peak RSS, shard bytes per
  # record; per partition: time, peak RSS; the final step's time and RSS.
  sharded_gb="${BENCH_SHARDED_GB:-20}"
  shards="${BENCH_SHARDS:-16}"
  partitions="${BENCH_PARTITIONS:-4}"
  corpus="$peers/sharded-${sharded_gb}gb"
  mkdir -p "$corpus"
  for i in $(seq "$sharded_gb"); do
    [ -f "$corpus/part-$i.jsonl" ] || echo "python3 bench/generate_chat.py $corpus/part-$i.jsonl.tmp 1000 $((100 + i)) && mv $corpus/part-$i.jsonl.tmp $corpus/part-$i.jsonl"
  done | xargs -r -P 2 -I{} sh -c '{}'
  work="$scratch/sharded"
  rm -rf "$work" && mkdir -p "$work"
  echo "== validate-data on $(du -sh "$corpus" | cut -f1) in $shards shards, merged in $partitions partitions"
  for i in $(seq "$shards"); do
    /usr/bin/time -f "%e %M" -o "$work/shard-$i.time" "$gantry" --quiet validate-data --data "$corpus" \
      --shard "$i/$shards" --out "$work/shards" --publish summary > /dev/null
  done
  for k in $(seq "$partitions"); do
    /usr/bin/time -f "%e %M" -o "$work/partition-$k.time" "$gantry" --quiet validate-data --merge "$work/shards/*.shard" \
      --partition "$k/$partitions" --out "$work/parts" --publish summary > /dev/null
  done
  /usr/bin/time -f "%e %M" -o "$work/final.time" "$gantry" --quiet validate-data --merge "$work/shards/*.shard" \
    --partition-results "$work/parts/*.json" --out "$work/final" --publish summary > /dev/null || true
  python3 - "$work" "$shards" "$partitions" "$(du -sb "$corpus" | cut -f1)" <<'PY'
import json, os, statistics, sys
work, shards, partitions, data_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def timed(name):
    seconds, kb = open(os.path.join(work, name)).read().split()
    return float(seconds), int(kb) / 1024
report = json.load(open(os.path.join(work, "final", "report.json")))
records = report["records"]
shard_times = [timed(f"shard-{i}.time") for i in range(1, shards + 1)]
shard_bytes = sum(os.path.getsize(os.path.join(work, "shards", f)) for f in os.listdir(os.path.join(work, "shards")))
part_times = [timed(f"partition-{k}.time") for k in range(1, partitions + 1)]
final = timed("final.time")
print(f"  {data_bytes / 1e9:.1f} GB, {records:,} records ({data_bytes / records:,.0f} bytes a record), verdict {report['verdict']}")
print(f"  shard: median {statistics.median(t for t, _ in shard_times):.1f} s, max {max(t for t, _ in shard_times):.1f} s, peak RSS max {max(m for _, m in shard_times):.0f} MB")
print(f"  shard files: {shard_bytes / 1e6:,.0f} MB in all, {shard_bytes / records:.0f} bytes a record, {100 * shard_bytes / data_bytes:.1f}% of the data")
print(f"  partition: median {statistics.median(t for t, _ in part_times):.1f} s, peak RSS max {max(m for _, m in part_times):.0f} MB ({max(m for _, m in part_times) * 1024 * 1024 / records:.0f} bytes a record of the dataset)")
print(f"  final step: {final[0]:.1f} s, peak RSS {final[1]:.0f} MB")
PY
fi

if section tiny-lm; then
  # The example workload's size and speed targets (examples/tiny-lm): no peer,
  # the numbers are the documented quality and latency.
  cargo build --release --locked -p tiny-lm --quiet
  tiny="$PWD/target/release/tiny-lm"
  echo "== tiny-lm gen-data: 8,000,000 training records"
  /usr/bin/time -f "  %e s, %M KB peak" "$tiny" gen-data --seed 7 --train-records 8000000 --out "$scratch/big" > "$scratch/big.json"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"  {d['train_bytes'] / 1e9:.2f} GB of train.jsonl\")" "$scratch/big.json"
  rm -rf "$scratch/big"
  "$tiny" gen-data --seed 0 --out "$scratch/tl-data" > /dev/null
  for steps in 150 300 600; do
    /usr/bin/time -f "%e" -o "$scratch/time" "$tiny" train --data "$scratch/tl-data/train.jsonl" --validation "$scratch/tl-data/validation.jsonl" \
      --steps "$steps" --output-dir "$scratch/tl-$steps" --checkpoint-dir "$scratch/tl-ck-$steps" > "$scratch/train.json" 2> /dev/null
    "$tiny" eval --model "$scratch/tl-$steps" --data "$scratch/tl-data/eval.jsonl" --out "$scratch/tl-res.jsonl" > "$scratch/eval.json"
    python3 - "$steps" "$(cat "$scratch/time")" "$scratch/train.json" "$scratch/eval.json" <<'PY'
import json, sys
t, e = json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))["metrics"]
print(f"  train --steps {sys.argv[1]:>3}: {float(sys.argv[2]):5.1f} s  loss {t['final_loss']:.3f}  val_loss {t['val_loss']:.3f}  acc {e['acc']:.3f}  exact_match {e['exact_match']:.3f}")
PY
  done
  "$tiny" train --data "$scratch/tl-data/train.jsonl" --steps 600 --corrupt-fraction 1 --output-dir "$scratch/tl-bad" --checkpoint-dir "$scratch/tl-ck-bad" > /dev/null 2>&1
  "$tiny" eval --model "$scratch/tl-bad" --data "$scratch/tl-data/eval.jsonl" --out "$scratch/tl-res.jsonl" \
    | python3 -c "import json,sys; e=json.load(sys.stdin)['metrics']; print(f\"  train --steps 600 --corrupt-fraction 1: acc {e['acc']:.3f}  exact_match {e['exact_match']:.3f}\")"
  echo "== tiny-lm serve: 200 short chat completions, one at a time"
  "$tiny" serve --model "$scratch/tl-600" --port 0 > "$scratch/serve.out" &
  server=$!
  for _ in $(seq 50); do grep -q http "$scratch/serve.out" 2> /dev/null && break; sleep 0.1; done
  python3 - "$(grep -o 'http://[0-9.:]*' "$scratch/serve.out")" <<'PY'
import json, statistics, sys, time, urllib.request
url = sys.argv[1] + "/v1/chat/completions"
body = json.dumps({"messages": [{"role": "user", "content": "What is 3 plus 4?"}], "max_tokens": 8}).encode()
times = []
for _ in range(200):
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, body, {"content-type": "application/json"})) as r:
        json.load(r)
    times.append((time.perf_counter() - started) * 1000)
times.sort()
print(f"  latency median {statistics.median(times):.2f} ms, p95 {times[189]:.2f} ms")
PY
  kill "$server"
fi

if section eval-gate; then
  # 200,000 paired items x 50 binary metrics x 10,000 resamples (BENCH_EVAL_ITEMS, BENCH_EVAL_METRICS).
  items="${BENCH_EVAL_ITEMS:-200000}"
  metrics="${BENCH_EVAL_METRICS:-50}"
  peer_metrics="${BENCH_EVAL_PEER_METRICS:-2}"
  if [ ! -x "$peers/scipy/bin/python" ]; then
    python3 -m venv "$peers/scipy"
    "$peers/scipy/bin/pip" install --quiet --disable-pip-version-check numpy scipy statsmodels
  fi
  evals="$peers/eval-$items-$metrics"
  [ -f "$evals/candidate.jsonl" ] || python3 bench/generate_eval.py "$evals" "$items" "$metrics"
  printf '[defaults]\nresamples = 10000\n[[rule]]\n' > "$scratch/policy.toml"
  echo "== eval-gate: $items paired items x $metrics binary metrics x 10,000 resamples"
  /usr/bin/time -f "  gantry eval-gate: %e s, %M KB peak" "$gantry" --quiet eval-gate --baseline "$evals/baseline.jsonl" \
    --candidate "$evals/candidate.jsonl" --policy "$scratch/policy.toml" --publish summary --out "$scratch/gate" > /dev/null || true
  /usr/bin/time -o "$scratch/peer.time" -f "  numpy/scipy peer ($peer_metrics of $metrics metrics): %e s, %M KB peak" \
    "$peers/scipy/bin/python" bench/peers/eval_gate.py "$evals/baseline.jsonl" "$evals/candidate.jsonl" 10000 "$peer_metrics" \
    2> /dev/null | sed 's/^/  peer: /'
  cat "$scratch/peer.time"
  python3 -c "
n, b = $items, 10000
print(f'  bound assumed for resampling items one by one: n x B x 8 bytes = {n * b * 8 / 1e9:.0f} GB of random reads per metric,')
print(f'  {n * b * 8 / 10e9:.1f} s per metric at 10 GB/s; gantry draws multinomial counts of the distinct differences instead')"
fi

if section register; then
  # A model directory of four equal shards (the Hugging Face layout), hashed
  # by gantry on all cores and by the usual tools one file after another.
  model_mb="${BENCH_MODEL_MB:-4096}"
  if [ ! -x "$peers/hf/bin/python" ]; then
    python3 -m venv "$peers/hf"
    "$peers/hf/bin/pip" install --quiet --disable-pip-version-check huggingface_hub==2.4.0
  fi
  model="$peers/model-${model_mb}mb"
  make_model "$model" "$model_mb"
  [ -f "$model/config.json" ] || echo '{"architectures": ["Bench"]}' > "$model/config.json"
  files=("$model"/*)
  echo "== register: hashing $(du -sh "$model" | cut -f1) in ${#files[@]} files (page cache warm)"
  hyperfine --warmup 1 --runs 5 --export-json "$out/register-hash.json" \
    "$gantry --quiet register --dry-run --model-dir $model --name bench --registry file:$scratch/registry" \
    "sha256sum ${files[*]}" \
    "sh -c 'for f in ${files[*]}; do openssl dgst -sha256 \$f; done'" \
    "$peers/hf/bin/python -c 'import sys; from huggingface_hub.utils.sha import sha_fileobj; [sha_fileobj(open(f, \"rb\")) for f in sys.argv[1:]]' ${files[*]}"
  echo "== register: hashing and storing into a file registry vs copying the files"
  hyperfine --warmup 1 --runs 5 --export-json "$out/register-store.json" \
    --prepare "rm -rf $scratch/registry $scratch/copy" \
    "$gantry --quiet register --model-dir $model --name bench --registry file:$scratch/registry" \
    "cp -r $model $scratch/copy"
  python3 - "$out/register-hash.json" "$out/register-store.json" "$(du -sb "$model" | cut -f1)" <<'PY'
import json, sys
size = int(sys.argv[3])
for path, names in [(sys.argv[1], ["gantry (all cores)", "sha256sum", "openssl dgst, file by file", "huggingface_hub sha_fileobj"]),
                    (sys.argv[2], ["gantry register (hash + store)", "cp -r (store only)"])]:
    results = json.load(open(path))["results"]
    base = results[0]["median"]
    for name, result in zip(names, results):
        print(f"  {name:32s} median {result['median']:7.2f} s  {size / result['median'] / 1e9:5.2f} GB/s  x{result['median'] / base:5.2f} of gantry")
PY
  rm -rf "$scratch/registry" "$scratch/copy"
fi

if section upload; then
  # Uploading a model: gantry register against oras-py (OCI) and MLflow's
  # own client (MLflow), to the same local servers, BENCH_UPLOAD_MB in four shards.
  upload_mb="${BENCH_UPLOAD_MB:-1024}"
  command -v docker-registry > /dev/null || { echo "bench: docker-registry is missing (apt-get install docker-registry)" >&2; exit 2; }
  if [ ! -x "$peers/oras/bin/python" ]; then
    python3 -m venv "$peers/oras"
    "$peers/oras/bin/pip" install --quiet --disable-pip-version-check oras==0.2.43
  fi
  if [ ! -x "$peers/mlflow/bin/python" ]; then
    python3 -m venv "$peers/mlflow"
    "$peers/mlflow/bin/pip" install --quiet --disable-pip-version-check mlflow==3.17.2
  fi
  model="$peers/upload-${upload_mb}mb"
  make_model "$model" "$upload_mb"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s/oci}, delete: {enabled: true}}\nhttp: {addr: 127.0.0.1:%s}\n' "$scratch" "$port" > "$scratch/registry.yml"
  docker-registry serve "$scratch/registry.yml" 2> /dev/null &
  registry_pid=$!
  start_mlflow
  mport="${mlflow_url##*:}"
  files=("$model"/*)
  echo "== upload: $(du -sh "$model" | cut -f1) in ${#files[@]} files to a local OCI registry and a local MLflow server"
  cat > "$scratch/oras_push.py" <<'PY'
import os, sys, oras.client
port, files = sys.argv[1], sys.argv[2:]
os.chdir(os.path.dirname(files[0]))
client = oras.client.OrasClient(hostname=f"127.0.0.1:{port}", insecure=True)
client.push(target=f"127.0.0.1:{port}/bench/oras:v1", files=[os.path.basename(f) for f in files], disable_path_validation=True)
PY
  cat > "$scratch/mlflow_log.py" <<'PY'
import sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("bench")
with mlflow.start_run():
    mlflow.log_artifacts(sys.argv[2], "model")
PY
  hyperfine --warmup 1 --runs 5 --export-json "$out/upload-oci.json" \
    --prepare "rm -rf $scratch/oci/docker" \
    "$gantry --quiet register --model-dir $model --name bench --registry oci://127.0.0.1:$port/bench" \
    "$peers/oras/bin/python $scratch/oras_push.py $port ${files[*]}"
  hyperfine --warmup 1 --runs 5 --export-json "$out/upload-mlflow.json" \
    "$gantry --quiet register --model-dir $model --name bench --registry mlflow+http://127.0.0.1:$mport" \
    "$peers/mlflow/bin/python $scratch/mlflow_log.py http://127.0.0.1:$mport $model"
  # mlflow server runs workers as children: end its whole process group.
  kill "$registry_pid" 2> /dev/null || true
  stop_mlflow
  python3 - "$out/upload-oci.json" "$out/upload-mlflow.json" "$(du -sb "$model" | cut -f1)" <<'PY'
import json, sys
size = int(sys.argv[3])
for path, names in [(sys.argv[1], ["gantry register (OCI)", "oras-py push"]),
                    (sys.argv[2], ["gantry register (MLflow)", "mlflow.log_artifacts"])]:
    results = json.load(open(path))["results"]
    base = results[0]["median"]
    for name, result in zip(names, results):
        print(f"  {name:28s} median {result['median']:7.2f} s  {size / result['median'] / 1e9:5.2f} GB/s  x{result['median'] / base:5.2f} of gantry")
PY
fi

if section train; then
  # train-on-runner: what `gantry train` adds around a real training run, and
  # its metric streaming to MLflow against MLflow's own client.
  if [ ! -x "$peers/mlflow/bin/python" ]; then
    python3 -m venv "$peers/mlflow"
    "$peers/mlflow/bin/pip" install --quiet --disable-pip-version-check mlflow==3.17.2
  fi
  cargo build --release --locked -p tiny-lm --quiet
  tiny="$PWD/target/release/tiny-lm"
  "$tiny" gen-data --seed 0 --train-records 20000 --out "$scratch/tr-data" > /dev/null
  echo "== launcher: tiny-lm train --steps 100, directly and under gantry train (checkpoints, metrics, run.json, hashing)"
  hyperfine --warmup 1 --runs 10 --export-json "$out/train-launch.json" \
    --prepare "rm -rf $scratch/tr-direct $scratch/tr-run" \
    "$tiny train --data $scratch/tr-data/train.jsonl --steps 100 --output-dir $scratch/tr-direct/model --checkpoint-dir $scratch/tr-direct/ck --metrics-file $scratch/tr-direct/metrics.jsonl" \
    "$gantry --quiet train --ci local --gpus none --run-dir $scratch/tr-run -- $tiny train --data $scratch/tr-data/train.jsonl --steps 100"
  steps="${BENCH_TRAIN_STEPS:-2000}"
  python3 - "$steps" > "$scratch/metrics-src.jsonl" <<'PY'
import json, math, sys
for step in range(1, int(sys.argv[1]) + 1):
    print(json.dumps({"step": step, "loss": 3 * math.exp(-step / 500) + 1, "lr": 3e-4, "grad_norm": 1 / math.sqrt(step), "tokens": step * 4096}))
PY
  printf 'cat %s >> "$GANTRY_METRICS_FILE"\n' "$scratch/metrics-src.jsonl" > "$scratch/emit.sh"
  cat > "$scratch/mlflow_metrics.py" <<'PY'
import json, sys, time
import mlflow
from mlflow.entities import Metric
uri, path, how = sys.argv[1:4]
mlflow.set_tracking_uri(uri)
mlflow.set_experiment("bench-train")
lines = [json.loads(line) for line in open(path)]
with mlflow.start_run() as run:
    if how == "per-step":  # what a training loop calls
        for line in lines:
            step = line.pop("step")
            mlflow.log_metrics(line, step=step)
    else:  # the client's best case: 1000 metrics per request
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, line["step"]) for line in lines for k, v in line.items() if k != "step"]
        client = mlflow.MlflowClient()
        for i in range(0, len(metrics), 1000):
            client.log_batch(run.info.run_id, metrics=metrics[i:i + 1000])
    mlflow.log_artifact(path)
PY
  start_mlflow
  echo "== metrics to MLflow: $steps steps x 4 metrics, from the metrics file to a local server"
  hyperfine --warmup 1 --runs 5 --export-json "$out/train-mlflow.json" \
    --prepare "rm -rf $scratch/tr-mlflow" \
    "$gantry --quiet train --ci local --gpus none --run-dir $scratch/tr-mlflow --tracking-uri $mlflow_url --experiment bench-train --command 'sh $scratch/emit.sh'" \
    "$peers/mlflow/bin/python $scratch/mlflow_metrics.py $mlflow_url $scratch/metrics-src.jsonl per-step" \
    "$peers/mlflow/bin/python $scratch/mlflow_metrics.py $mlflow_url $scratch/metrics-src.jsonl batch"
  stop_mlflow
  # A fast run that did not reach the server would be no result at all.
  python3 -c "import json, sys; t = json.load(open(sys.argv[1]))['tracking']; sys.exit(0 if t['synced'] else 'gantry did not sync: ' + str(t))" "$scratch/tr-mlflow/run.json"
  python3 - "$out/train-launch.json" "$out/train-mlflow.json" <<'PY'
import json, sys
for path, names in [(sys.argv[1], ["tiny-lm train (direct)", "gantry train -- tiny-lm train"]),
                    (sys.argv[2], ["gantry train --tracking-uri", "mlflow.log_metrics per step", "MlflowClient.log_batch"])]:
    results = json.load(open(path))["results"]
    base = results[0]["median"]
    for name, result in zip(names, results):
        print(f"  {name:32s} median {result['median']:7.2f} s  x{result['median'] / base:5.2f} of the first")
PY
fi

if section router; then
  for tool in nginx wrk; do
    command -v "$tool" > /dev/null || { echo "bench: $tool is missing (apt-get install nginx-light wrk)" >&2; exit 2; }
  done
  duration="${BENCH_ROUTER_SECONDS:-10}"
  rdir="$scratch/router"
  rm -rf "$rdir" && mkdir -p "$rdir/nginx"
  port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  b1=$(port) b2=$(port) nginx_port=$(port) data_port=$(port) admin_port=$(port)
  # Two fast OpenAI-shaped responders (so the proxy is what is measured) and
  # nginx's weighted upstream over them, 90/10 like a canary step.
  reply='{"id":"chatcmpl-1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}'
  cat > "$rdir/nginx/nginx.conf" <<NGINX
worker_processes 1;
pid $rdir/nginx/nginx.pid;
error_log $rdir/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $rdir/nginx/body; proxy_temp_path $rdir/nginx/proxy;
  fastcgi_temp_path $rdir/nginx/fastcgi; uwsgi_temp_path $rdir/nginx/uwsgi; scgi_temp_path $rdir/nginx/scgi;
  server { listen 127.0.0.1:$b1; location / { default_type application/json; return 200 '$reply'; } }
  server { listen 127.0.0.1:$b2; location / { default_type application/json; return 200 '$reply'; } }
  upstream models { server 127.0.0.1:$b1 weight=9; server 127.0.0.1:$b2 weight=1; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / { proxy_pass http://models; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
  nginx -c "$rdir/nginx/nginx.conf"
  "$gantry" --quiet router --ci local --listen "127.0.0.1:$data_port" --admin "127.0.0.1:$admin_port" --state-dir "$rdir/state" --workers "${BENCH_ROUTER_WORKERS:-0}" 2> "$rdir/router.log" &
  router_pid=$!
  trap 'nginx -c "$rdir/nginx/nginx.conf" -s stop 2> /dev/null || true; kill $router_pid 2> /dev/null || true' EXIT
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$admin_port/health" > /dev/null && break; sleep 0.1; done
  curl -fs -X POST "http://127.0.0.1:$admin_port/v1/backends" -H 'content-type: application/json' -d "{\"version\":\"stable\",\"url\":\"http://127.0.0.1:$b1\"}" > /dev/null
  curl -fs -X POST "http://127.0.0.1:$admin_port/v1/backends" -H 'content-type: application/json' -d "{\"version\":\"canary\",\"url\":\"http://127.0.0.1:$b2\"}" > /dev/null
  curl -fs -X PUT "http://127.0.0.1:$admin_port/v1/weights" -H 'content-type: application/json' \
    -d '{"weights":{"stable":90,"canary":10},"stable":"stable","lease_seconds":3600,"holder":"bench"}' > /dev/null
  cat > "$rdir/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"m","messages":[{"role":"user","content":"Say hello."}],"max_tokens":8}'
wrk.headers["Content-Type"] = "application/json"
LUA
  # Paced: 10 connections, each waiting 10 ms between requests (about 1,000 requests/s).
  cat "$rdir/post.lua" > "$rdir/paced.lua"
  echo 'function delay() return 10 end' >> "$rdir/paced.lua"
  run_wrk() { # name url script connections -> "name rps p50_ms p99_ms"
    wrk -t1 -c"$4" -d"${duration}s" --latency -s "$3" "$2" > "$rdir/$1.txt"
    python3 - "$1" "$rdir/$1.txt" <<'PY'
import re, sys
text = open(sys.argv[2]).read()
def ms(label):
    m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)$", text, re.M)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(sys.argv[1], rps, ms(50), ms(99), errors.group(1) if errors else 0)
PY
  }
  : > "$rdir/results.txt"
  for round in 1 2 3; do
    for target in "direct http://127.0.0.1:$b1/v1/chat/completions" "nginx http://127.0.0.1:$nginx_port/v1/chat/completions" "gantry http://127.0.0.1:$data_port/v1/chat/completions"; do
      set -- $target
      run_wrk "$1-max-$round" "$2" "$rdir/post.lua" 8 >> "$rdir/results.txt"
      run_wrk "$1-paced-$round" "$2" "$rdir/paced.lua" 10 >> "$rdir/results.txt"
    done
  done
  rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$router_pid/status")
  nginx_rss_kb=$(for pid in $(pgrep -f "nginx: worker process"); do awk '/VmHWM/ {print $2}' "/proc/$pid/status"; done | sort -n | tail -1)
  python3 - "$rdir/results.txt" "$rss_kb" "$nginx_rss_kb" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
def median(kind, field):
    return statistics.median(float(row[field]) for row in rows if row[0].rsplit("-", 1)[0] == kind)
print(f"== router: wrk -t1, {len(rows) // 6} rounds, medians; POST chat completion, 90/10 split over two static responders")
for target in ["direct", "nginx", "gantry"]:
    print(f"  {target:7s} max  {median(target + '-max', 1):9.0f} req/s  p50 {median(target + '-max', 2):6.3f} ms  p99 {median(target + '-max', 3):6.3f} ms")
for target in ["direct", "nginx", "gantry"]:
    print(f"  {target:7s} ~1k  {median(target + '-paced', 1):9.0f} req/s  p50 {median(target + '-paced', 2):6.3f} ms  p99 {median(target + '-paced', 3):6.3f} ms")
for target in ["nginx", "gantry"]:
    print(f"  {target:7s} added at ~1k req/s: p50 {median(target + '-paced', 2) - median('direct-paced', 2):+.3f} ms, p99 {median(target + '-paced', 3) - median('direct-paced', 3):+.3f} ms")
print(f"  gantry/nginx throughput: x{median('gantry-max', 1) / median('nginx-max', 1):.2f}")
print(f"  errors (non-2xx): {sum(int(row[4]) for row in rows)}")
print(f"  peak RSS: gantry router {int(sys.argv[2]) / 1024:.1f} MiB, nginx worker {int(sys.argv[3]) / 1024:.1f} MiB")
PY
  curl -fs "http://127.0.0.1:$admin_port/metrics" | grep -E '^gantry_router_requests_total' | head -4
  nginx -c "$rdir/nginx/nginx.conf" -s stop
  kill "$router_pid"
  trap - EXIT
fi
