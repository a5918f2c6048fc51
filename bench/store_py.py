"""Python's sqlite3 peer for bench/store.lua: the same records (name, key,
JSON result) into the same table, WAL with synchronous=NORMAL, by
executemany in one transaction; then each key read back by primary key and
its JSON decoded.  python3 bench/store_py.py dir [n]"""
import json, os, sqlite3, sys, time

d, n = sys.argv[1], int(float(sys.argv[2]) if len(sys.argv) > 2 else 100000)
path = os.path.join(d, "store_py.sqlite")
for p in (path, path + "-wal", path + "-shm"):
    if os.path.exists(p):
        os.remove(p)
db = sqlite3.connect(path)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=NORMAL")
db.execute("CREATE TABLE pyq_jobs (name TEXT NOT NULL, key TEXT NOT NULL, "
           "result TEXT, PRIMARY KEY (name, key)) WITHOUT ROWID")
t0 = time.perf_counter()
with db:
    db.executemany("INSERT OR REPLACE INTO pyq_jobs VALUES (?, ?, ?)",
                   (("bench", "match:%d" % i,
                     json.dumps({"id": i, "name": "player%d" % i}))
                    for i in range(1, n + 1)))
print("executemany_per_s %.0f" % (n / (time.perf_counter() - t0)))
t0 = time.perf_counter()
out = []
for i in range(1, n + 1):
    row = db.execute("SELECT result FROM pyq_jobs WHERE name = ? AND key = ?",
                     ("bench", "match:%d" % i)).fetchone()
    out.append(json.loads(row[0]))
assert len(out) == n
print("lookups_per_s %.0f" % (n / (time.perf_counter() - t0)))
db.close()
