#!/usr/bin/env bash
# The README's first command works from a fresh clone (issue 11): clone this repository's
# committed HEAD into a temporary directory, run the first command of README.md's "Start here"
# exactly as written there, wait until the daemon answers, ask the demo café for its menu and its
# open status over HTTP, and stop it.
#
# Quick by reusing the build: the clone builds into a target directory kept under this
# repository's `target/readme-clone` (CARGO_TARGET_DIR), so after the first run only the
# kaffediem crate itself is compiled again, not its dependencies. It is not `target/` itself: the
# clone's release binary would replace the working tree's `target/release/kaffediem`.
# Run by scripts/test.sh; alone: `scripts/readme-first-command.sh`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readme="$root/README.md"

# The first command of "## Start here": its first indented (code) line.
command="$(awk '/^## Start here/ { inside = 1; next }
                inside && /^## / { exit }
                inside && /^    [^ ]/ { sub(/^    /, ""); print; exit }' "$readme")"
if [ -z "$command" ]; then
  echo "readme-first-command: no command found under '## Start here' in README.md" >&2
  exit 1
fi
echo "==> README's first command from a fresh clone: $command"

work="$(mktemp -d "${TMPDIR:-/tmp}/kaffediem-clone.XXXXXX")"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

git clone --quiet "$root" "$work/kaffediem"
cd "$work/kaffediem"

# The README promises http://localhost:4000. When something else already listens there (another
# daemon on a developer's machine), the same command runs on a free port instead
# (KAFFEDIEM_PORT=0 overrides the port, as the README documents) and the log names it.
port=4000
if (exec 3<>/dev/tcp/127.0.0.1/4000) 2>/dev/null; then
  echo "    port 4000 is taken here; running on a free port (KAFFEDIEM_PORT=0)"
  export KAFFEDIEM_PORT=0
  port=""
fi

export CARGO_TARGET_DIR="$root/target/readme-clone"
log="$work/daemon.log"
# Its own process group, so that stopping it stops cargo and the daemon it runs.
setsid bash -c "$command" >"$log" 2>&1 &
pid=$!

# The first build of the clone may take minutes on two cores; the daemon then answers at once.
deadline=$((SECONDS + 900))
base=""
while [ $SECONDS -lt $deadline ]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "readme-first-command: '$command' exited before answering:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  if [ -z "$port" ]; then
    addr="$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$log" | head -n 1)"
    if [ -n "$addr" ]; then port="${addr##*:}"; fi
  fi
  if [ -n "$port" ] && curl -fsS --max-time 2 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
    base="http://127.0.0.1:$port"
    break
  fi
  sleep 1
done
if [ -z "$base" ]; then
  echo "readme-first-command: '$command' did not answer within 15 minutes:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi

# The demo café: a menu with categories and items, and the café open.
menu="$(curl -fsS --max-time 10 "$base/api/menu")"
status="$(curl -fsS --max-time 10 "$base/api/collections/status/records")"
MENU="$menu" STATUS="$status" python3 - <<'EOF'
import json, os, sys
menu = json.loads(os.environ["MENU"])
status = json.loads(os.environ["STATUS"])
categories = menu.get("tree", [])
items = [item for category in categories for item in category.get("items", [])]
if not categories or not items:
    sys.exit(f"the demo café has no menu: {len(categories)} categories, {len(items)} items")
if not any(row.get("open") is True for row in status):
    sys.exit(f"the demo café is not open: {status}")
print(f"    menu: {len(categories)} categories, {len(items)} items; status: open")
EOF

kill -TERM -- "-$pid"
wait "$pid" 2>/dev/null || true
pid=""
echo "    stopped"
