"""datatrove's MinHash near-duplicate stages on chat JSONL: the peer of
gantry's near-duplicates check. Signatures (5-grams, 14 buckets x 8 hashes,
datatrove's defaults, which gantry's banding follows), buckets, clusters;
prints how many records it would remove. Usage: datatrove_minhash.py
INPUT_DIR WORK_DIR WORKERS (INPUT_DIR holds one or more .jsonl files; datatrove
parallelises over files)."""

import glob
import os
import struct
import sys

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.readers import JsonlReader


def chat_text(self, data, path, id_in_file):
    """A chat record's text: its messages' contents, one per line."""
    return {
        "text": "\n".join(m.get("content") or "" for m in data.get("messages", [])),
        "id": f"{path}/{id_in_file}",
    }


def main():
    input_dir, work, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    files = len(glob.glob(os.path.join(input_dir, "*.jsonl")))
    config = MinhashConfig()
    quiet = {"skip_completed": False, "logging_dir": os.path.join(work, "logs")}
    LocalPipelineExecutor(
        pipeline=[
            JsonlReader(input_dir, adapter=chat_text, glob_pattern="*.jsonl"),
            MinhashDedupSignature(output_folder=os.path.join(work, "signatures"), config=config),
        ],
        tasks=files,
        workers=workers,
        **quiet,
    ).run()
    LocalPipelineExecutor(
        pipeline=[
            MinhashDedupBuckets(
                input_folder=os.path.join(work, "signatures"),
                output_folder=os.path.join(work, "buckets"),
                config=config,
            )
        ],
        tasks=config.num_buckets,
        workers=workers,
        **quiet,
    ).run()
    LocalPipelineExecutor(
        pipeline=[
            MinhashDedupCluster(
                input_folder=os.path.join(work, "buckets"),
                output_folder=os.path.join(work, "remove_ids"),
                config=config,
            )
        ],
        tasks=1,
        **quiet,
    ).run()
    removed = sum(
        os.path.getsize(path) // struct.calcsize("<I")
        for path in glob.glob(os.path.join(work, "remove_ids", "*.remove"))
    )
    print(f"datatrove: {removed} records to remove as near duplicates")


if __name__ == "__main__":
    main()
