#!/usr/bin/env bash
# Runs every test file with tap and ends with one line: `N passed, N failed, N skipped`.
# grep -a: a test may print bytes that are not text, which would make grep stop listing results.
# Tests that need root (runc, overlay mounts) run when we are root, as in CI.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p test/.fixtures
# The rootless tests' users, made now: a test file making them mid-run would change /etc/passwd under hostile.test.ts.
sh test/helpers/rootless-users.sh
# pasta, slirp4netns and fuse-overlayfs open these as the rootless test users. Some VM images make them 0600 at boot,
# where devtmpfs and the distributions make them 0666: set as those do, before any test file runs (a file run alone
# does the same: test/helpers/rootless-image.ts userDevicesAsDistributions).
if [ "$(id -u)" = 0 ]; then for device in /dev/net/tun /dev/fuse; do [ -e "$device" ] && chmod 0666 "$device"; done; fi
files=$(ls lib-common/test/*.test.ts lib-common/*/test/*.test.ts tools/*/test/*.test.ts test/*.test.ts 2>/dev/null)
log=test/.fixtures/tap-output.txt
# shellcheck disable=SC2086
pnpm exec tap --reporter=tap $files "$@" 2>&1 | tee "$log" | grep -aE '^(not ok|ok|# )' | grep -avE '^# (Subtest|No coverage)'
status=${PIPESTATUS[0]}
node -e '
const text = require("fs").readFileSync(process.argv[1], "utf8");
// tap prints one summary line for the whole run: # { total: N, pass: N, fail: N, skip: N }
const lines = text.split("\n").filter((l) => /^# \{ total: /.test(l));
const last = lines.at(-1) ?? "";
const get = (k) => Number((last.match(new RegExp(k + ": (\\d+)")) ?? [0, 0])[1]);
const failed = get("fail") + (last ? 0 : 1);
console.log(`${get("pass")} passed, ${failed} failed, ${get("skip") + get("todo")} skipped`);
' "$log"
exit "$status"
