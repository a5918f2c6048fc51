"""Writes the JSON benchmark's inputs into a folder:
  matches.jsonl  the fixture API's 64 match documents (about 20 KB each), one a line
  big.json       a ~50 MB array of mixed records: integers, floats, strings
                 with escapes and non-ASCII text, booleans, nulls, nesting
    python3 bench/json_data.py DIR"""
import json
import os
import random
import sys

sys.dont_write_bytecode = True   # nothing left in tests/fixtures/
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "fixtures"))
import api  # noqa: E402  (the fixture's own document shape)

out = sys.argv[1]
with open(os.path.join(out, "matches.jsonl"), "wb") as f:
    for i, doc in enumerate(api.MATCH_VARIANTS):
        f.write(doc.replace(b"@MATCH_ID@", b"NA1_%d" % i) + b"\n")

rng = random.Random(42)
words = ["alpha", "beta", "gamma", "delta", "naïve café", "東京", "line\nbreak",
         "quote \"x\"", "tab\there", "emoji 😀", "path/to/thing"]
parts, size, i = [], 0, 0
while size < 50 * 1000 * 1000:
    rec = {
        "id": 10**17 + i, "seq": i, "ok": i % 3 != 0, "parent": None if i % 5 else i - 1,
        "name": rng.choice(words) + " " + str(i),
        "score": round(rng.uniform(0, 1000), 2), "ratio": rng.random(),
        "tags": [rng.choice(words) for _ in range(rng.randrange(0, 4))],
        "pos": {"x": rng.randrange(-10000, 10000), "y": rng.randrange(-10000, 10000),
                "z": round(rng.uniform(-1, 1), 4)},
        "samples": [rng.randrange(0, 1 << 20) for _ in range(8)],
    }
    s = json.dumps(rec, ensure_ascii=False)
    parts.append(s)
    size += len(s.encode()) + 1
    i += 1
with open(os.path.join(out, "big.json"), "w", encoding="utf-8") as f:
    f.write("[" + ",\n".join(parts) + "]")
