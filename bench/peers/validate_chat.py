"""The validate-data benchmark's peers: the same tier-0 checks written idiomatically
with pandas and with polars.

usage: python validate_chat.py pandas|polars DATA.jsonl

Checks, as gantry does them: every line parses; each record's `messages` has
known roles, string contents, at least one assistant turn, and no two user or
assistant turns in a row; characters per record; exact duplicate records; and
the SHA-256 of the file for the lock. Prints the counts as JSON so the run can
be compared with gantry's report.
"""

import hashlib
import json
import sys

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def schema_ok(messages):
    if not isinstance(messages, list) or not messages:
        return False
    previous = None
    has_assistant = False
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role not in ROLES or not isinstance(content, str):
            return False
        if role in ("user", "assistant") and role == previous:
            return False
        has_assistant = has_assistant or role == "assistant"
        previous = role
    return has_assistant


def with_pandas(path):
    import pandas as pd

    frame = pd.read_json(path, lines=True)
    messages = frame["messages"]
    schema_errors = int((~messages.map(schema_ok)).sum())
    characters = messages.map(lambda turns: sum(len(turn["content"]) for turn in turns))
    duplicates = int(messages.map(lambda turns: json.dumps(turns, sort_keys=True)).duplicated().sum())
    return {"records": len(frame), "schema": schema_errors, "exact-duplicates": duplicates, "characters-p50": float(characters.median()), "sha256": sha256_of(path)}


def with_polars(path):
    import polars as pl

    frame = pl.read_ndjson(path)
    role = pl.element().struct.field("role")
    checks = frame.select(
        bad_role=pl.col("messages").list.eval(~role.is_in(list(ROLES))).list.any(),
        no_assistant=~pl.col("messages").list.eval(role == "assistant").list.any(),
        repeated=pl.col("messages").list.eval((role == role.shift(1)) & role.is_in(["user", "assistant"])).list.any(),
        characters=pl.col("messages").list.eval(pl.element().struct.field("content").str.len_chars()).list.sum(),
        first=pl.col("messages").hash().is_first_distinct(),
    )
    schema_errors = checks.select((pl.col("bad_role") | pl.col("no_assistant") | pl.col("repeated")).sum()).item()
    duplicates = frame.height - checks["first"].sum()
    return {"records": frame.height, "schema": int(schema_errors), "exact-duplicates": int(duplicates), "characters-p50": float(checks["characters"].median()), "sha256": sha256_of(path)}


if __name__ == "__main__":
    engine, path = sys.argv[1], sys.argv[2]
    result = {"pandas": with_pandas, "polars": with_polars}[engine](path)
    print(json.dumps(result))
