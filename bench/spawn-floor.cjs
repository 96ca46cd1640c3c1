#!/usr/bin/env node
// The floor of any ctr-spawn written in Node (bench/run.sh and bench/spawn.sh time it beside ctr-spawn):
//   node bench/spawn-floor.cjs PROGRAM [ARG...]
// starts PROGRAM (runc, with the config.json ctr-spawn writes) with our stdin, stdout and stderr, waits for it and
// exits with its status (128+N for signal N). Nothing else: no program of its own to load, no record, spec, state
// or clean-up. So `floor - node -e 0 - runc` is what Node itself costs a wrapper of runc (one spawn from a Node
// process: libuv forks on Linux, and the fork's cost grows with the parent's memory), and `ctr-spawn - floor` is
// ctr-spawn's own work. It spawns as ctr-spawn's foreground run does (lib-common/src/subprocess.ts startDirect):
// through the process handle node:child_process drives, so no child_process module is loaded for it either.
// Failure: a program that cannot start exits 127 with the reason on stderr; no arguments exits 2.
'use strict';
const [file, ...args] = process.argv.slice(2);
if (file === undefined) {
  process.stderr.write('usage: node bench/spawn-floor.cjs PROGRAM [ARG...]\n');
  process.exit(2);
}
const { Process } = process.binding('process_wrap');
const { signals } = require('node:os').constants;
const child = new Process();
child.onexit = (code, signal) => process.exit(signal ? 128 + (signals[signal] ?? 0) : code);
const err = child.spawn({
  file,
  args: [file, ...args],
  stdio: [0, 1, 2].map((fd) => ({ type: 'fd', fd })),
  detached: false,
});
if (err !== 0) {
  process.stderr.write(`spawn-floor: cannot start ${file}: uv error ${err}\n`);
  process.exit(127);
}
