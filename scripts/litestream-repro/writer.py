"""A stand-in for the daemon's writer: small committed transactions (a row, two indexes, a
trigger writing a change log), WAL, synchronous=FULL, automatic checkpoints off (what
database.external_replication does). Runs until killed."""
import sqlite3
import sys
import time
import uuid

c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA synchronous=FULL")
c.execute("PRAGMA wal_autocheckpoint=0")
c.execute("PRAGMA busy_timeout=5000")
c.execute("CREATE TABLE IF NOT EXISTS o(id INTEGER PRIMARY KEY AUTOINCREMENT, uuid TEXT UNIQUE, day INT, body TEXT)")
c.execute("CREATE INDEX IF NOT EXISTS o_day ON o(day, id)")
c.execute("CREATE TABLE IF NOT EXISTS changes(seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT, rid INT)")
c.execute("CREATE TRIGGER IF NOT EXISTS o_ins AFTER INSERT ON o BEGIN INSERT INTO changes(tbl, rid) VALUES ('o', NEW.id); END")
n = 0
while True:
    c.execute("BEGIN IMMEDIATE")
    c.execute("INSERT INTO o(uuid, day, body) VALUES (?, ?, ?)", (str(uuid.uuid4()), n // 50, "x" * 300))
    c.execute("COMMIT")
    n += 1
    # Leave Litestream room for its own write transactions.
    time.sleep(0.002)
