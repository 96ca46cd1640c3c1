#!/bin/sh
# Creates the rootless test users (test/helpers/rootless.ts) when missing, as root, under flock:
# conveyor-rl-sub with subordinate ids 300000:65536 in /etc/subuid and /etc/subgid, and
# conveyor-rl-nosub with none (useradd's own ranges replaced or removed). Idempotent: nothing is
# written when all is in place. test/run.sh runs it before the suite, so no test file changes
# /etc/passwd while others run (hostile.test.ts checks it is untouched); rootless.ts runs it too.
# Usage: rootless-users.sh (as root; a no-op otherwise)
[ "$(id -u)" = 0 ] || exit 0
SUB=conveyor-rl-sub NOSUB=conveyor-rl-nosub START=300000 COUNT=65536
exec flock -w 120 /run/conveyor-rl-users.lock sh -c '
set -e
for u in "$1" "$2"; do
  id -u "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh --user-group "$u"
done
line="$1:$3:$4"
for f in /etc/subuid /etc/subgid; do
  [ -e "$f" ] || : > "$f"
  if grep -q "^$2:" "$f"; then sed -i "/^$2:/d" "$f"; fi
  if ! grep -qx "$line" "$f" || [ "$(grep -c "^$1:" "$f")" != 1 ]; then
    sed -i "/^$1:/d" "$f"
    echo "$line" >> "$f"
  fi
done
' ensure "$SUB" "$NOSUB" "$START" "$COUNT"
