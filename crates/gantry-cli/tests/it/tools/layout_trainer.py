"""A trainer in the shape of each checkpoint layout gantry reads.

Usage: layout_trainer.py LAYOUT, under `gantry train`. The first attempt
writes complete checkpoints for steps 1 and 2, leaves step 3 half-written
the way that trainer would when killed mid-save, and fails. The next
attempt checks that GANTRY_RESUME_FROM names step 2's checkpoint in the
layout's own form (exit 3 if not), trains on from there (writing step 3
over the half-written one, as the trainer itself would) and finishes.

Checkpoint bytes are minimal but real: safetensors with a true header,
torch archives as zip files holding a pickle, DCP metadata files.
"""

import json
import os
import pathlib
import pickle
import shutil
import struct
import sys
import zipfile

LAYOUT = sys.argv[1]
CHECKPOINTS = pathlib.Path(os.environ["GANTRY_CHECKPOINT_DIR"])
OUTPUT = pathlib.Path(os.environ["GANTRY_OUTPUT_DIR"])
ATTEMPT = int(os.environ["GANTRY_ATTEMPT"])
RESUME = os.environ.get("GANTRY_RESUME_FROM")


def safetensors(step):
    header = json.dumps({"__metadata__": {"step": str(step)}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + struct.pack("<f", float(step))


def torch_archive(step):
    path = CHECKPOINTS / f".archive-{step}.tmp"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"step": step}, protocol=2))
        archive.writestr("archive/data/0", struct.pack("<f", float(step)))
    data = path.read_bytes()
    path.unlink()
    return data


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def save(step, complete=True):
    """A checkpoint of `step`; with complete=False, what a kill mid-save leaves."""
    if LAYOUT == "hf":
        # Trainer writes into checkpoint-<step> directly, trainer_state.json last.
        directory = CHECKPOINTS / f"checkpoint-{step}"
        write(directory / "model.safetensors", safetensors(step))
        write(directory / "optimizer.pt", torch_archive(step))
        if complete:
            write(directory / "trainer_state.json", json.dumps({"global_step": step}).encode())
    elif LAYOUT == "dir":
        # Built under a temporary name, renamed into place; its own state file.
        temporary = CHECKPOINTS / f".tmp-checkpoint-{step}"
        write(temporary / "weights.safetensors", safetensors(step))
        write(temporary / "state.json", json.dumps({"step": step}).encode())
        if complete:
            target = CHECKPOINTS / f"checkpoint-{step}"
            if target.exists():
                shutil.rmtree(target)
            temporary.rename(target)
    elif LAYOUT == "lightning":
        # ModelCheckpoint: epoch=E-step=S.ckpt and last.ckpt, written in place.
        data = torch_archive(step)
        name = CHECKPOINTS / f"epoch=0-step={step}.ckpt"
        if complete:
            write(name, data)
            write(CHECKPOINTS / "last.ckpt", data)
        else:
            write(name, data[: len(data) // 2])
    elif LAYOUT == "deepspeed":
        # save_checkpoint: the tag directory, then `latest` naming it.
        tag = CHECKPOINTS / f"global_step{step}"
        write(tag / "mp_rank_00_model_states.pt", torch_archive(step))
        write(tag / "zero_pp_rank_0_mp_rank_00_optim_states.pt", torch_archive(step))
        if complete:
            write(CHECKPOINTS / "latest", f"global_step{step}".encode())
    elif LAYOUT == "dcp":
        # torch.distributed.checkpoint: shards, then .metadata by the coordinator.
        directory = CHECKPOINTS / f"step-{step}"
        write(directory / "__0_0.distcp", safetensors(step))
        if complete:
            write(directory / ".metadata", pickle.dumps({"step": step}, protocol=2))
    else:
        sys.exit(f"unknown layout {LAYOUT}")


def expected_resume(step):
    return {
        "hf": CHECKPOINTS / f"checkpoint-{step}",
        "dir": CHECKPOINTS / f"checkpoint-{step}",
        "lightning": CHECKPOINTS / "last.ckpt",
        "deepspeed": CHECKPOINTS / f"global_step{step}",
        "dcp": CHECKPOINTS / f"step-{step}",
    }[LAYOUT]


if ATTEMPT == 1:
    if RESUME:
        sys.exit(f"attempt 1 was told to resume from {RESUME}")
    save(1)
    save(2)
    save(3, complete=False)
    sys.exit(1)

expected = expected_resume(2)
if RESUME is None or pathlib.Path(RESUME) != expected:
    print(f"attempt {ATTEMPT}: GANTRY_RESUME_FROM={RESUME!r}, expected {expected}", file=sys.stderr)
    sys.exit(3)
save(3)
save(4)
write(OUTPUT / "model.safetensors", safetensors(4))
