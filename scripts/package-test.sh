#!/usr/bin/env bash
# The Debian package, tested for real (issue 12).
#
#   scripts/package-test.sh contents   build the .deb, check its files, conffiles and scripts
#   scripts/package-test.sh cycle      contents, then install → edit config → upgrade → remove →
#                                      purge with dpkg on THIS machine (root; a throwaway machine
#                                      such as CI), asserting what a Pi's maintainer would see
#
# The .deb holds the debug binary by default (KAFFEDIEM_DEB_BUILD=copy: the one `cargo test`
# already built, so CI compiles nothing twice); KAFFEDIEM_DEB_BUILD=release runs `cargo deb`
# as a user does. Everything else (layout, conffiles, maintainer scripts, systemd snippets) is
# what `cargo deb` makes either way.
#
# The cycle refuses to run where Kaffediem is installed or its paths exist (it would purge them),
# and cleans up after itself (purge, the user it created) however it ends.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

mode="${1:-cycle}"
build="${KAFFEDIEM_DEB_BUILD:-copy}"
work="$(mktemp -d /tmp/kaffediem-package-test.XXXXXX)"
trap 'rm -rf "$work"' EXIT
CONF=/etc/kaffediem/kaffediem.toml
DATA=/var/lib/kaffediem

fail() {
  echo "package-test: FAILED: $*" >&2
  exit 1
}
check() { # check DESCRIPTION COMMAND... : run the command, fail with the description if it fails
  local what="$1"
  shift
  if ! "$@"; then fail "$what"; fi
  echo "  ok  $what"
}
contains() { # contains FILE TEXT
  grep -qF -- "$2" "$1" || {
    echo "--- $1:" >&2
    cat "$1" >&2
    return 1
  }
}
lacks() { ! grep -qF -- "$2" "$1"; }

command -v cargo-deb >/dev/null || fail "cargo-deb is not installed (cargo install cargo-deb --version 3.8.0 --locked)"
command -v dpkg-deb >/dev/null || fail "dpkg-deb is not installed"

# ---------------------------------------------------------------------------------------------
# Build: two .debs, the second with a higher version, for the upgrade.
# ---------------------------------------------------------------------------------------------
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
old_version="${version}-1"
new_version="${version}-2"
build_deb() { # build_deb DEB_VERSION → path of the .deb
  local out="$work/deb-$1"
  mkdir -p "$out"
  if [ "$build" = release ]; then
    cargo deb --quiet --deb-version "$1" --output "$out" -- --bin kaffediem >&2
  else
    # cargo-deb takes `target/<profile>/kaffediem`; a profile of our own, so that the copied
    # debug binary never stands in for a real release build.
    mkdir -p target/package-test
    cp target/debug/kaffediem target/package-test/kaffediem
    cargo deb --quiet --no-build --profile package-test --fast --deb-version "$1" --output "$out" >&2
  fi
  ls "$out"/*.deb
}
if [ "$build" != release ]; then
  echo "==> cargo build --bin kaffediem (the binary the .deb holds)"
  cargo build --quiet --bin kaffediem
fi
echo "==> cargo deb ($build)"
deb1="$(build_deb "$old_version")"
echo "  built $deb1"

# ---------------------------------------------------------------------------------------------
# Contents: files, modes, conffiles, control, maintainer scripts.
# ---------------------------------------------------------------------------------------------
echo "==> contents of $(basename "$deb1")"
dpkg-deb -c "$deb1" >"$work/files"
dpkg-deb -I "$deb1" >"$work/info"
dpkg-deb -e "$deb1" "$work/control"
dpkg-deb -x "$deb1" "$work/tree"
check "the binary, 0755 root, in /usr/bin" grep -qE '^-rwxr-xr-x (root/root|0/0) .* \./usr/bin/kaffediem$' "$work/files"
check "the load tool is not" lacks "$work/files" "kaffediem-bench"
check "the config is not world-readable (0640)" grep -qE '^-rw-r----- (root/root|0/0) .* \./etc/kaffediem/kaffediem\.toml$' "$work/files"
check "the config is a conffile" contains "$work/control/conffiles" "/etc/kaffediem/kaffediem.toml"
check "the daemon's unit is in it" contains "$work/files" "./usr/lib/systemd/system/kaffediem.service"
check "the Litestream unit is in it" contains "$work/files" "./usr/lib/systemd/system/kaffediem-litestream.service"
check "the Litestream example is in it" contains "$work/files" "./usr/share/doc/kaffediem/examples/litestream.yml"
check "the packaged unit is kaffediem.service" cmp -s kaffediem.service "$work/tree/usr/lib/systemd/system/kaffediem.service"
check "the packaged config is packaging/kaffediem.toml" cmp -s packaging/kaffediem.toml "$work/tree/etc/kaffediem/kaffediem.toml"
check "the packaged config puts the database in $DATA" contains "$work/tree$CONF" "path = \"$DATA/kaffediem.db\""
# The packaged config is the documented one (every key, every comment) but for the path.
sed "s|^path = \"$DATA/kaffediem.db\"$|path = \"kaffediem.db\"|" packaging/kaffediem.toml >"$work/unpackaged.toml"
check "packaging/kaffediem.toml is kaffediem.toml with the package's database path
      (regenerate: sed 's|^path = \"kaffediem.db\"\$|path = \"$DATA/kaffediem.db\"|' kaffediem.toml > packaging/kaffediem.toml)" \
  cmp -s kaffediem.toml "$work/unpackaged.toml"
check "the packaged config is accepted by the packaged binary" \
  sh -c "KAFFEDIEM_DB='$work/parse.db' '$work/tree/usr/bin/kaffediem' --config '$work/tree$CONF' demo >'$work/parse.log' 2>&1"
check "control: Depends on adduser" grep -qE '^ Depends:.*adduser' "$work/info"
check "control: version $old_version" grep -qE "^ Version: $old_version\$" "$work/info"
for script in postinst prerm postrm; do
  check "$script is in it, executable" test -x "$work/control/$script"
done
check "postinst creates the system user" contains "$work/control/postinst" "adduser --system"
check "postinst enables the daemon (cargo-deb's systemd snippet)" contains "$work/control/postinst" "deb-systemd-helper enable kaffediem.service"
check "postinst restarts the daemon after an upgrade" contains "$work/control/postinst" "deb-systemd-invoke \$_dh_action kaffediem.service"
check "postinst enables the Litestream unit only if it was enabled before" \
  grep -qF -- "--quiet was-enabled kaffediem-litestream.service; then" "$work/control/postinst"
check "the systemd snippets come after the user is created" \
  sh -c "awk '/adduser --system/ {u=NR} /deb-systemd-invoke/ && !d {d=NR} END {exit !(u && d && u < d)}' '$work/control/postinst'"
check "prerm stops the daemon on remove" contains "$work/control/prerm" "deb-systemd-invoke stop kaffediem.service"
check "postrm purges the units' state" contains "$work/control/postrm" "deb-systemd-helper purge"
check "the scripts are sound shell" sh -n "$work/control/postinst"
sh -n "$work/control/prerm" && sh -n "$work/control/postrm" || fail "prerm/postrm do not parse"

# The Litestream unit follows the daemon (README "Backups"): started after it, stopped and
# restarted with it (systemd's restart after a crash included), and enabled as wanted by it.
litestream_unit="$work/tree/usr/lib/systemd/system/kaffediem-litestream.service"
check "the Litestream unit is part of the daemon's (PartOf=)" grep -qx 'PartOf=kaffediem.service' "$litestream_unit"
check "the Litestream unit starts after the daemon" grep -qxE 'After=.*\bkaffediem\.service\b.*' "$litestream_unit"
check "the Litestream unit is installed as wanted by the daemon's" grep -qx 'WantedBy=kaffediem.service' "$litestream_unit"
if command -v systemctl >/dev/null; then
  # `systemctl --root` enables into a directory tree: no running systemd needed.
  mkdir -p "$work/root/usr/lib/systemd/system"
  cp "$work/tree/usr/lib/systemd/system/"*.service "$work/root/usr/lib/systemd/system/"
  systemctl --root="$work/root" enable kaffediem-litestream.service >"$work/enable.log" 2>&1 ||
    { cat "$work/enable.log" >&2; fail "systemctl --root enable kaffediem-litestream"; }
  check "enabling the Litestream unit makes the daemon's start pull it in" \
    test -L "$work/root/etc/systemd/system/kaffediem.service.wants/kaffediem-litestream.service"
  check "and not boot on its own" test ! -e "$work/root/etc/systemd/system/multi-user.target.wants/kaffediem-litestream.service"
fi
if command -v litestream >/dev/null; then
  check "the Litestream example is a configuration Litestream reads" \
    sh -c "litestream databases -config packaging/litestream.yml | grep -q '/var/lib/kaffediem/kaffediem.db'"
fi
if command -v systemd-analyze >/dev/null; then
  # `verify` checks ExecStart exists: point it at a stand-in (Litestream is not in the package).
  # The daemon's unit beside it (with the packaged binary), for PartOf= and After= to name.
  mkdir -p "$work/units"
  sed "s|^ExecStart=/usr/bin/litestream|ExecStart=$(command -v true)|" \
    "$litestream_unit" >"$work/units/kaffediem-litestream.service"
  sed "s|^ExecStart=/usr/bin/kaffediem|ExecStart=$work/tree/usr/bin/kaffediem|" \
    "$work/tree/usr/lib/systemd/system/kaffediem.service" >"$work/units/kaffediem.service"
  systemd-analyze verify "$work/units/kaffediem-litestream.service" "$work/units/kaffediem.service" \
    >"$work/verify.log" 2>&1 || true
  check "systemd-analyze verify: the Litestream unit is sound" \
    sh -c "! grep -q 'kaffediem-litestream.service' '$work/verify.log'"
fi

if [ "$mode" = contents ]; then
  echo "==> package contents: all checks passed"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# The cycle, for real, on this machine.
# ---------------------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || fail "the install cycle needs root (it runs dpkg -i)"
if dpkg-query -W -f='${Status}' kaffediem 2>/dev/null | grep -q 'installed\|config-files'; then
  fail "a kaffediem package is installed on this machine; the test would purge it: not run"
fi
for p in /etc/kaffediem "$DATA" /usr/bin/kaffediem; do
  [ ! -e "$p" ] || fail "$p exists on this machine; the test would delete it: not run"
done
user_existed=no
if getent passwd kaffediem >/dev/null; then user_existed=yes; fi

serve_pid=""
cleanup() {
  local rc=$?
  if [ -n "$serve_pid" ]; then kill -KILL "$serve_pid" 2>/dev/null || true; fi
  if dpkg-query -W -f='${Status}' kaffediem 2>/dev/null | grep -q 'installed\|config-files'; then
    dpkg --purge kaffediem >/dev/null 2>&1 || true
  fi
  rm -rf /etc/kaffediem "$DATA"
  if [ "$user_existed" = no ] && getent passwd kaffediem >/dev/null; then
    deluser --system kaffediem >/dev/null 2>&1 || userdel kaffediem 2>/dev/null || true
    getent group kaffediem >/dev/null && { delgroup --system kaffediem >/dev/null 2>&1 || groupdel kaffediem 2>/dev/null || true; }
  fi
  rm -rf "$work"
  if [ $rc != 0 ]; then echo "package-test: cleaned up after the failure" >&2; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_daemon() { runuser -u kaffediem -- "$@"; }

# serve_once LOG: the installed binary with the installed config on a free loopback port, as
# the service's user (setpriv execs it: the SIGTERM reaches the daemon itself); answers /healthz; then a clean stop (SIGTERM → exit 0).
serve_once() {
  local log="$1"
  KAFFEDIEM_BIND=127.0.0.1 KAFFEDIEM_PORT=0 RUST_LOG=info \
    setpriv --reuid kaffediem --regid kaffediem --init-groups -- \
    /usr/bin/kaffediem --config "$CONF" serve >"$log" 2>&1 &
  serve_pid=$!
  local addr="" i
  for i in $(seq 1 600); do
    addr="$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$log" | head -n1)"
    [ -n "$addr" ] && break
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$log" >&2; fail "the installed daemon did not start"; }
  check "the installed daemon answers /healthz on $addr" \
    sh -c "curl -fsS --max-time 20 http://$addr/healthz | grep -q ok"
  kill -TERM "$serve_pid"
  local rc=0
  wait "$serve_pid" || rc=$?
  serve_pid=""
  check "it stops cleanly on SIGTERM (exit 0)" test "$rc" = 0
}

mode_of() { stat -c '%U:%G %a' "$1"; }
systemd_running=no
if [ -d /run/systemd/system ]; then systemd_running=yes; fi
echo "==> install $(basename "$deb1") (systemd running: $systemd_running)"
dpkg -i "$deb1" >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; fail "dpkg -i failed"; }
cat "$work/install.log"
check "the package is installed" sh -c "dpkg-query -W -f='\${Status}' kaffediem | grep -q 'install ok installed'"
check "a system user kaffediem (uid < 1000, no login shell, home $DATA)" \
  sh -c "getent passwd kaffediem | awk -F: '\$3 < 1000 && \$6 == \"$DATA\" && \$7 ~ /nologin\$/ {ok=1} END {exit !ok}'"
check "a kaffediem group" getent group kaffediem
check "$DATA: kaffediem:kaffediem 750" test "$(mode_of "$DATA")" = "kaffediem:kaffediem 750"
check "$CONF: root:kaffediem 640" test "$(mode_of "$CONF")" = "root:kaffediem 640"
check "/usr/bin/kaffediem: root:root 755" test "$(mode_of /usr/bin/kaffediem)" = "root:root 755"
check "the daemon is enabled at boot" test -L /etc/systemd/system/multi-user.target.wants/kaffediem.service
check "the Litestream unit is not" test ! -e /etc/systemd/system/kaffediem.service.wants/kaffediem-litestream.service
check "(nor at boot on its own)" test ! -e /etc/systemd/system/multi-user.target.wants/kaffediem-litestream.service
if [ "$systemd_running" = no ]; then
  check "the install says systemd is not running, and how to start by hand" \
    contains "$work/install.log" "systemd is not running here, so the service was not started"
else
  check "the install says where the first admin's password is" contains "$work/install.log" "journalctl -u kaffediem"
fi
check "the install says which keys to edit" contains "$work/install.log" "http.allowed_origins and cafe.time_zone"

echo "==> the installed binary with the installed config"
if [ "$systemd_running" = yes ]; then
  # The package started the service; the test's own run needs the database to itself.
  systemctl stop kaffediem.service
fi
serve_once "$work/serve1.log"
check "the first start printed the first admin's password" contains "$work/serve1.log" "created the first admin admin@kaffediem.local with the generated password"
check "the database is in $DATA, the daemon's" test "$(stat -c %U "$DATA/kaffediem.db")" = kaffediem
as_daemon /usr/bin/kaffediem --config "$CONF" demo >/dev/null
as_daemon /usr/bin/kaffediem --config "$CONF" check >"$work/check1.txt" ||
  { cat "$work/check1.txt" >&2; fail "kaffediem check failed after install"; }
echo "  ok  kaffediem check (as the service's user, the installed config)"
as_daemon /usr/bin/kaffediem --config "$CONF" user list >"$work/users1.txt"
check "the first admin is in the database" contains "$work/users1.txt" "admin@kaffediem.local"

echo "==> the café edits its configuration"
sed -i 's|^time_zone = "Europe/Oslo"$|time_zone = "Europe/Berlin"|' "$CONF"
echo '# edited by the café' >>"$CONF"
check "the edit is in place" contains "$CONF" 'time_zone = "Europe/Berlin"'
cp "$CONF" "$work/edited.toml"

echo "==> upgrade to $new_version"
deb2="$(build_deb "$new_version")"
dpkg -i "$deb2" >"$work/upgrade.log" 2>&1 || { cat "$work/upgrade.log" >&2; fail "dpkg -i (upgrade) failed"; }
cat "$work/upgrade.log"
check "the new version is installed" test "$(dpkg-query -W -f='${Version}' kaffediem)" = "$new_version"
check "the upgrade says it was one" contains "$work/upgrade.log" "$old_version"
check "the café's config edit is kept, byte for byte" cmp -s "$CONF" "$work/edited.toml"
check "no .dpkg-new/.dpkg-dist beside it" sh -c "! ls /etc/kaffediem/*.dpkg-* >/dev/null 2>&1"
check "$CONF: still root:kaffediem 640" test "$(mode_of "$CONF")" = "root:kaffediem 640"
check "$DATA: still kaffediem:kaffediem 750" test "$(mode_of "$DATA")" = "kaffediem:kaffediem 750"
check "still enabled at boot" test -L /etc/systemd/system/multi-user.target.wants/kaffediem.service
if [ "$systemd_running" = yes ]; then systemctl stop kaffediem.service; fi
as_daemon /usr/bin/kaffediem --config "$CONF" check >"$work/check2.txt" ||
  { cat "$work/check2.txt" >&2; fail "kaffediem check failed after the upgrade"; }
# The same rows per table: the database came through the upgrade (size and epoch may move).
grep '^rows ' "$work/check1.txt" >"$work/rows1.txt" || true
grep '^rows ' "$work/check2.txt" >"$work/rows2.txt" || true
check "the database is kept: the same rows per table as before the upgrade" cmp -s "$work/rows1.txt" "$work/rows2.txt"
check "(and there are rows to compare: the demo menu)" grep -qE "item [1-9]" "$work/rows1.txt"
as_daemon /usr/bin/kaffediem --config "$CONF" user list >"$work/users2.txt"
check "the first admin is still there" cmp -s "$work/users1.txt" "$work/users2.txt"
serve_once "$work/serve2.log"
check "no second first admin after the upgrade" lacks "$work/serve2.log" "created the first admin"

echo "==> remove"
dpkg -r kaffediem >"$work/remove.log" 2>&1 || { cat "$work/remove.log" >&2; fail "dpkg -r failed"; }
cat "$work/remove.log"
check "the binary is gone" test ! -e /usr/bin/kaffediem
check "the unit is gone" test ! -e /usr/lib/systemd/system/kaffediem.service
check "the config is kept (with the edit)" cmp -s "$CONF" "$work/edited.toml"
check "the database is kept" test -s "$DATA/kaffediem.db"
check "the remove says what it kept" contains "$work/remove.log" "Kept: the configuration in /etc/kaffediem and the database in $DATA"

echo "==> purge"
dpkg -P kaffediem >"$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; fail "dpkg -P failed"; }
cat "$work/purge.log"
check "the purge says what it deletes" contains "$work/purge.log" "purging: deleting the configuration /etc/kaffediem and the database $DATA"
check "/etc/kaffediem is gone" test ! -e /etc/kaffediem
check "$DATA is gone" test ! -e "$DATA"
check "no enable symlink is left" test ! -e /etc/systemd/system/multi-user.target.wants/kaffediem.service
check "dpkg forgot the package" sh -c "! dpkg-query -W -f='\${Status}' kaffediem 2>/dev/null | grep -q installed"
check "no statoverride is left" sh -c "! dpkg-statoverride --list $CONF >/dev/null 2>&1"
check "the system user is kept, as the purge said" getent passwd kaffediem

echo "==> package cycle: all checks passed"
