"""A PyTorch training script that follows the gantry training contract.

An example for self-hosted GPU runners (docs/training-contract.md): the same
byte-level task as examples/tiny-lm, with torch. It reads GANTRY_OUTPUT_DIR,
GANTRY_CHECKPOINT_DIR, GANTRY_RESUME_FROM, GANTRY_METRICS_FILE and GANTRY_SEED;
writes atomic checkpoint-<step> directories (safetensors weights, optimizer and
RNG state); on SIGTERM checkpoints and exits 143; resumes bit-identically on the
same hardware.

    pip install torch safetensors
    python examples/pytorch/train.py --data data/train.jsonl --steps 2000

It is not run in gantry's CI (torch is large); tiny-lm is the tested reference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

EXIT_TERMINATED = 143
PROMPT_WEIGHT = 0.1


def env_path(name: str, default: str | None) -> Path | None:
    value = os.environ.get(name, "") or default
    return Path(value) if value else None


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.RMSNorm(d), nn.RMSNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, bias=False, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d, bias=False), nn.ReLU(), nn.Linear(4 * d, d, bias=False))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.ln1(x)
        x = x + self.attn(y, y, y, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    def __init__(self, block: int = 256, d: int = 256, layers: int = 4, heads: int = 4):
        super().__init__()
        self.block = block
        self.tok = nn.Embedding(256, d)
        self.pos = nn.Embedding(block, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.RMSNorm(d)
        self.head = nn.Linear(d, 256, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool, device=idx.device), 1)
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for b in self.blocks:
            x = b(x, mask)
        return self.head(self.ln_f(x))


def render(messages: list[dict]) -> tuple[bytes, list[float]]:
    """One record as bytes, with the loss weight of each byte (answers weigh 1)."""
    out, weights = bytearray(b"\n"), [PROMPT_WEIGHT]
    for m in messages:
        label = {"system": "System", "assistant": "Assistant"}.get(m["role"], "User") + ": "
        content = m["content"].replace("\n", " ").encode()
        out += label.encode() + content + b"\n"
        w = 1.0 if m["role"] == "assistant" else PROMPT_WEIGHT
        weights += [PROMPT_WEIGHT] * len(label) + [w] * (len(content) + 1)
    return bytes(out), weights


def load_examples(path: Path, block: int) -> list[tuple[bytes, list[float]]]:
    examples = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            data, weights = render(record["messages"])
        except (ValueError, KeyError, TypeError):
            continue  # malformed lines are validate-data's business
        examples.append((data[-(block + 1):], weights[-(block + 1):]))
    if not examples:
        sys.exit(f"{path}: no usable chat records")
    return examples


def batch(examples, size: int, seed: int, step: int, device):
    """The batch of `step` depends only on (seed, step): nothing to save for resume."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    picked = [examples[i] for i in torch.randint(len(examples), (size,), generator=g).tolist()]
    t = max(len(d) - 1 for d, _ in picked)
    x = torch.zeros(size, t, dtype=torch.long)
    y = torch.zeros(size, t, dtype=torch.long)
    w = torch.zeros(size, t)
    for row, (d, weights) in enumerate(picked):
        n = len(d) - 1
        x[row, :n] = torch.tensor(list(d[:-1]))
        y[row, :n] = torch.tensor(list(d[1:]))
        w[row, :n] = torch.tensor(weights[1:])
    return x.to(device), y.to(device), w.to(device)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_checkpoint(root: Path, model, opt, sched, state: dict, keep: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"checkpoint-{state['step']}"
    tmp = root / f".checkpoint-{state['step']}.tmp.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    meta = {"format": "pt", "producer": "gantry examples/pytorch", "step": str(state["step"])}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors", metadata=meta)
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, tmp / "optimizer.pt")
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
    for f in tmp.iterdir():
        with open(f, "rb+") as fh:
            os.fsync(fh.fileno())
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(list_checkpoints(root))[:-keep]:
        shutil.rmtree(old[1], ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    found = []
    for p in root.glob("checkpoint-*") if root.is_dir() else []:
        if p.name.removeprefix("checkpoint-").isdigit() and (p / "trainer_state.json").is_file():
            found.append((int(p.name.removeprefix("checkpoint-")), p))
    return sorted(found)


def resolve_resume(path: Path) -> Path:
    if (path / "trainer_state.json").is_file():
        return path
    found = list_checkpoints(path)
    if not found:
        sys.exit(f"GANTRY_RESUME_FROM={path}: no complete checkpoint-<step> directory there")
    return found[-1][1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--keep-checkpoints", type=int, default=3)
    args = p.parse_args()

    out = env_path("GANTRY_OUTPUT_DIR", "pytorch-out/model")
    ckpt_root = env_path("GANTRY_CHECKPOINT_DIR", "pytorch-out/checkpoints")
    resume = env_path("GANTRY_RESUME_FROM", None)
    metrics_path = env_path("GANTRY_METRICS_FILE", None)
    seed = int(os.environ.get("GANTRY_SEED", "0") or 0)

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = TinyLM().to(device)
    examples = load_examples(args.data, model.block)
    opt = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, betas=(0.9, 0.99), weight_decay=0.01)
    warmup = max(args.steps // 20, 1)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(args.steps - warmup, 1), 1.0)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    state = {"step": 0, "total_steps": args.steps, "seed": seed, "batch_size": args.batch_size,
             "learning_rate": args.learning_rate, "data_sha256": sha256(args.data)}
    if resume:
        ckpt = resolve_resume(resume)
        saved = json.loads((ckpt / "trainer_state.json").read_text())
        keys = ("total_steps", "seed", "batch_size", "learning_rate", "data_sha256")
        if any(saved[k] != state[k] for k in keys):
            diff = {k: (saved[k], state[k]) for k in keys if saved[k] != state[k]}
            print(f"{ckpt}: cannot reproduce the run, settings differ (checkpoint, now): {diff}", file=sys.stderr)
            return 2
        model.load_state_dict(load_file(ckpt / "model.safetensors", device=device))
        other = torch.load(ckpt / "optimizer.pt", map_location=device)
        opt.load_state_dict(other["optimizer"])
        sched.load_state_dict(other["scheduler"])
        state = saved
        print(f"resumed from {ckpt} at step {state['step']}", file=sys.stderr)

    stop = {"signal": False}
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.update(signal=True))
    metrics = open(metrics_path, "a") if metrics_path else None
    started = time.monotonic()
    while state["step"] < args.steps:
        if stop["signal"]:
            where = save_checkpoint(ckpt_root, model, opt, sched, state, args.keep_checkpoints)
            print(f"signal received: wrote {where} and stopped", file=sys.stderr)
            return EXIT_TERMINATED
        x, y, w = batch(examples, args.batch_size, seed, state["step"], device)
        logits = model(x)
        nll = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1), reduction="none")
        loss = (nll * w.reshape(-1)).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        state["step"] += 1
        state["loss"] = loss.item()
        if metrics:
            metrics.write(json.dumps({"step": state["step"], "loss": state["loss"],
                                      "lr": sched.get_last_lr()[0], "elapsed_s": time.monotonic() - started}) + "\n")
            metrics.flush()
        if args.checkpoint_every and state["step"] % args.checkpoint_every == 0 and state["step"] < args.steps:
            save_checkpoint(ckpt_root, model, opt, sched, state, args.keep_checkpoints)

    save_checkpoint(ckpt_root, model, opt, sched, state, args.keep_checkpoints)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors",
              metadata={"format": "pt", "producer": "gantry examples/pytorch", "step": str(state["step"])})
    (out / "config.json").write_text(json.dumps({"model_type": "tiny-lm-torch", "block_size": model.block}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
