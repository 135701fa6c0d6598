"""Seeded generator of OpenAI-chat JSONL for the validate-data benchmark.

usage: python3 bench/generate_chat.py OUT.jsonl MEGABYTES [SEED]

Records look like fine-tuning data: a system prompt, a user question and an
assistant answer of varied length, with about 1% exact duplicates planted.
"""

import json
import random
import sys


def main() -> None:
    out, megabytes = sys.argv[1], int(sys.argv[2])
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "qua", "bri", "dor", "fen", "gal", "hur", "jin"]
    vocabulary = [a + b + c for a in syllables for b in syllables for c in syllables[:4]]
    target = megabytes * 1_000_000
    written = 0
    recent = []
    with open(out, "w", encoding="utf-8") as handle:
        index = 0
        while written < target:
            if recent and rng.random() < 0.01:
                line = rng.choice(recent)
            else:
                question = " ".join(rng.choices(vocabulary, k=rng.randint(6, 40)))
                answer = " ".join(rng.choices(vocabulary, k=rng.randint(10, 300)))
                line = json.dumps({"messages": [
                    {"role": "system", "content": "You answer questions about the island of Veldra."},
                    {"role": "user", "content": f"Question {index}: {question}?"},
                    {"role": "assistant", "content": answer + "."},
                ]}) + "\n"
                recent = (recent + [line])[-1000:]
            handle.write(line)
            written += len(line)
            index += 1


if __name__ == "__main__":
    main()
