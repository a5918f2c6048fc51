"""Python's sqlite3 peer for bench/sqlite.lua: the same rows, in WAL mode
with synchronous=NORMAL, by executemany in one transaction (its fastest
path) and by execute in a loop.  python3 bench/sqlite_py.py dir [n]"""
import os, sqlite3, sys, time

d, n = sys.argv[1], int(float(sys.argv[2]) if len(sys.argv) > 2 else 200000)

def fresh(name):
    path = os.path.join(d, name)
    for p in (path, path + "-wal", path + "-shm"):
        if os.path.exists(p):
            os.remove(p)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE m (id INTEGER, name TEXT, score REAL)")
    return db

db = fresh("many.sqlite")
t0 = time.perf_counter()
with db:
    db.executemany("INSERT INTO m VALUES (?, ?, ?)",
                   ((i, "player%d" % i, i * 0.5) for i in range(1, n + 1)))
db.close()
print("executemany_inserts_per_s %.0f" % (n / (time.perf_counter() - t0)))

db = fresh("loop.sqlite")
t0 = time.perf_counter()
with db:
    for i in range(1, n + 1):
        db.execute("INSERT INTO m VALUES (?, ?, ?)", (i, "player%d" % i, i * 0.5))
db.close()
print("loop_inserts_per_s %.0f" % (n / (time.perf_counter() - t0)))
