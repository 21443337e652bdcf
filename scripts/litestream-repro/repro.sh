#!/bin/bash
# Litestream 0.5.17 ships a transaction SQLite never committed when the writer is SIGKILLed
# mid-commit, and the replica restores corrupt. No Kaffediem involved: `writer.py` is a plain
# SQLite writer. Each round: writer + `litestream replicate` (file replica), SIGKILL the
# writer after 2-6 s, SIGTERM Litestream, `litestream restore`, `PRAGMA integrity_check`.
# Stops at the first corrupt restore and prints, per LTX file, what a restore up to it holds.
# Usage: repro.sh [ROUNDS] [WORKDIR]. Lower `min-checkpoint-page-count` makes it frequent
# (2 rounds in 32 on a loaded 2-core machine); the default (1000) needs a burst that long.
set -u
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:-60}
work=${2:-$(mktemp -d)}
for i in $(seq 1 "$rounds"); do
  d=$work/round$i
  mkdir -p "$d"
  printf 'dbs:\n  - path: %s/db.sqlite\n    min-checkpoint-page-count: 50\n    checkpoint-interval: 1s\n    replica:\n      url: file://%s/replica\n      sync-interval: 1s\n' "$d" "$d" > "$d/litestream.yml"
  python3 "$here/writer.py" "$d/db.sqlite" & writer=$!
  sleep 0.5
  litestream replicate -config "$d/litestream.yml" > "$d/litestream.log" 2>&1 & ls=$!
  sleep "$((2 + RANDOM % 4)).$((RANDOM % 10))"
  kill -KILL "$writer"; wait "$writer" 2>/dev/null
  kill -TERM "$ls"; wait "$ls"
  litestream restore -o "$d/restored.sqlite" "file://$d/replica" || { echo "round $i: restore failed"; exit 2; }
  check=$(sqlite3 "$d/restored.sqlite" "PRAGMA integrity_check" 2>&1 | head -3)
  if [ "$check" != "ok" ]; then
    echo "round $i: restored file is corrupt: $check"
    echo "source: $(sqlite3 "$d/db.sqlite" 'PRAGMA integrity_check') max(id)=$(sqlite3 "$d/db.sqlite" 'SELECT max(id) FROM o')"
    litestream ltx "file://$d/replica"
    n=$(ls "$d/replica/ltx/0" | wc -l)
    for t in $(seq 1 "$n"); do
      rm -f "$d/t.sqlite"*
      litestream restore -txid "$(printf %016x "$t")" -o "$d/t.sqlite" "file://$d/replica" > /dev/null 2>&1
      echo "restore -txid $t: $(sqlite3 "$d/t.sqlite" 'PRAGMA quick_check' 2>&1 | head -1) max(id)=$(sqlite3 "$d/t.sqlite" 'SELECT max(id) FROM o' 2>&1) pages=$(sqlite3 "$d/t.sqlite" 'PRAGMA page_count' 2>&1)"
    done
    echo "kept: $d"
    exit 1
  fi
  echo "round $i: ok"
  rm -rf "$d"
done
