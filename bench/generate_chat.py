"""Seeded generator of OpenAI-chat JSONL for the validate-data benchmark.

usage: python3 bench/generate_chat.py OUT.jsonl MEGABYTES [SEED] [mixed]

Records look like fine-tuning data: a system prompt, a user question and an
assistant answer of varied length, with about 1% exact duplicates planted.

`mixed` makes text that takes validate-data's slower paths too: sentences
with capitals, punctuation and digits, some non-ASCII words (accents, CJK,
emoji), `weight` on some assistant messages, some tool calls, and a few
planted emails, phone numbers and fake credentials (so the run's verdict is
fail). Without it the output is what it always was for a seed.
"""

import json
import random
import sys


def main() -> None:
    out, megabytes = sys.argv[1], int(sys.argv[2])
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
    make = mixed_record if len(sys.argv) > 4 and sys.argv[4] == "mixed" else plain_record
    write(out, megabytes * 1_000_000, rng, make)


def write(out: str, target: int, rng: random.Random, make) -> None:
    """Writes records from `make(rng, index)` until `target` bytes, about 1% of
    them repeats of one of the last 1000."""
    written = 0
    recent = []
    with open(out, "w", encoding="utf-8") as handle:
        index = 0
        while written < target:
            if recent and rng.random() < 0.01:
                line = rng.choice(recent)
            else:
                line = make(rng, index)
                recent = (recent + [line])[-1000:]
            handle.write(line)
            written += len(line.encode("utf-8"))
            index += 1


SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "qua", "bri", "dor", "fen", "gal", "hur", "jin"]
VOCABULARY = [a + b + c for a in SYLLABLES for b in SYLLABLES for c in SYLLABLES[:4]]


def plain_record(rng: random.Random, index: int) -> str:
    question = " ".join(rng.choices(VOCABULARY, k=rng.randint(6, 40)))
    answer = " ".join(rng.choices(VOCABULARY, k=rng.randint(10, 300)))
    return json.dumps({"messages": [
        {"role": "system", "content": "You answer questions about the island of Veldra."},
        {"role": "user", "content": f"Question {index}: {question}?"},
        {"role": "assistant", "content": answer + "."},
    ]}) + "\n"


ENGLISH = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an they you "
    "were her all she there would their we him been has when who will more no if out so said what up its about into "
    "than them can only other new some could time these two may then do first any my now such like our over man me "
    "even most made after also did many before must through back years where much your way well down should because "
    "each just those people how too little state good very make world still own see men work long get here between "
    "both life being under never day same another know while last might us great old year off come since against go"
).split()
FOREIGN = ["café", "naïve", "Zürich", "façade", "señor", "Ærø", "東京", "数据集", "모델", "Ελλάδα", "Москва", "😀", "✓", "—"]


def sentence(rng: random.Random, n_words: int) -> str:
    words = []
    for _ in range(n_words):
        roll = rng.random()
        if roll < 0.04:
            words.append(rng.choice(FOREIGN))
        elif roll < 0.08:
            words.append(str(rng.randint(0, 10_000)))
        else:
            words.append(rng.choice(ENGLISH))
        if rng.random() < 0.07:
            words[-1] += rng.choice([",", ";", ":", "'s"])
    text = " ".join(words)
    return text[:1].upper() + text[1:] + rng.choice([".", ".", ".", "?", "!"])


def paragraph(rng: random.Random, n_sentences: int) -> str:
    return " ".join(sentence(rng, rng.randint(4, 24)) for _ in range(n_sentences))


def planted(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.005:
        return f" Write to {rng.choice(ENGLISH)}.{rng.randint(1, 99)}@example.com for details."
    if roll < 0.008:
        return f" Call +1 415 555 {rng.randint(1000, 9999)} before noon."
    if roll < 0.009:
        return " The key is AKIA" + "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", k=16)) + "."
    return ""


def mixed_record(rng: random.Random, index: int) -> str:
    question = paragraph(rng, rng.randint(1, 3)) + planted(rng)
    answer = paragraph(rng, rng.randint(1, 20))
    messages = [
        {"role": "system", "content": "You are a careful assistant. Answer in the user's language."},
        {"role": "user", "content": f"Question {index}: {question}"},
    ]
    roll = rng.random()
    if roll < 0.03:
        call = {"id": f"call_{index}", "type": "function",
                "function": {"name": "search", "arguments": json.dumps({"query": sentence(rng, 5)})}}
        messages += [
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"call_{index}", "content": paragraph(rng, 2)},
            {"role": "assistant", "content": answer},
        ]
    elif roll < 0.08:
        messages.append({"role": "assistant", "content": answer, "weight": rng.choice([0, 1])})
    else:
        messages.append({"role": "assistant", "content": answer})
    return json.dumps({"messages": messages}, ensure_ascii=rng.random() < 0.5) + "\n"


if __name__ == "__main__":
    main()
