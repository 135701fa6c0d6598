"""Seeded paired eval results for the eval-gate benchmark (gantry-native JSONL).

usage: python3 bench/generate_eval.py DIR ITEMS METRICS [SEED]

Writes DIR/baseline.jsonl and DIR/candidate.jsonl: ITEMS items, each scored
on METRICS binary metrics (`m00`…); the candidate loses about 1 point on
every metric.
"""

import json
import random
import sys
from pathlib import Path


def main() -> None:
    out, items, metrics = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 5)
    out.mkdir(parents=True, exist_ok=True)
    names = [f"m{i:02d}" for i in range(metrics)]
    with open(out / "baseline.jsonl", "w") as base, open(out / "candidate.jsonl", "w") as cand:
        for i in range(items):
            b = {name: 1 if rng.random() < 0.7 else 0 for name in names}
            c = {name: (0 if v == 1 and rng.random() < 0.03 else 1 if v == 0 and rng.random() < 0.05 else v) for name, v in b.items()}
            head = {"id": f"q{i}", "task": "bench", "prompt_hash": f"sha256:{i:064x}"}
            base.write(json.dumps({**head, "scores": b}) + "\n")
            cand.write(json.dumps({**head, "scores": c}) + "\n")


if __name__ == "__main__":
    main()
