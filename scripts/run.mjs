#!/usr/bin/env -S node --
// conveyor-run: what `docker run IMAGE [COMMAND...]` does, composed from the tools:
//   ctr-spawn --check-flags [OPTIONS]            every flag checked before anything is pulled
//   img-fetch --pull=missing IMAGE | layer-unpack | ctr-spawn [OPTIONS] -- COMMAND
// Pulls only when the image is missing, reuses unpacked layers, and exits with
// the container's own exit code (125/126/127 when it could not start). With -d,
// ctr-spawn's container record comes out and the container runs on detached.
// --root, --log-format, --progress and -q reach every tool. Signals go to the
// pipeline; Ctrl-C stops the container (escalating to a kill when its pid 1
// ignores SIGINT, as a shell does) and ends conveyor-run with 130.
// docs/conveyor-run.md is its manual.
import { minimist } from 'zx';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { realpathSync } from 'node:fs';
import os from 'node:os';
import { RUN_FLAGS } from '../tools/ctr-spawn/dist/flags.js';

const HELP = `Usage: conveyor-run [OPTIONS] IMAGE [COMMAND [ARG...]]

Run a command in a new container, pulling the image first if it is not in the
store: img-fetch --pull=missing | layer-unpack | ctr-spawn. Every flag is
checked (by ctr-spawn --check-flags) before anything is pulled.

Options are ctr-spawn's (see ctr-spawn --help: -d, --name, --rm, --restart,
-e, --env-file, -v, -w, -u, -m, --cpus, -p, -P, --net, ...), plus:
      --pull POLICY     always, missing (default) or never
      --platform P      os/arch[/variant] to pull
      --insecure        do not verify the registry's TLS certificate
      --plain-http      talk HTTP to the registry
      --root DIR        store root (every tool)
      --log-format F    text (default) or json (every tool)
      --progress MODE   auto, bar, json or none (img-fetch, layer-unpack)
  -q, --quiet           no progress, no notes: only the container's output
  -h, --help            show this help
      --version         print the version

Examples:
  conveyor-run busybox echo hello
  conveyor-run -e GREETING=hi -v /tmp:/data localhost:5000/app:v1
  conveyor-run --memory 64m --pids-limit 50 alpine sh -c 'ulimit -a'
  conveyor-run -d --name web busybox httpd -f -p 8080   # prints a container record
  conveyor-run -d -p 127.0.0.1:8080:80 busybox httpd -f -p 80   # served on the host's 8080
  conveyor-run -d --restart on-failure:3 app:v1         # run again when it fails
  conveyor-run --pull always --platform linux/arm64 alpine uname -m

Exit status: the container's own code (128+N when killed by signal N); 130
after Ctrl-C; 125 when a flag is wrong or the container could not start; 126
command not executable; 127 command not found; img-fetch's or layer-unpack's
code when the pull or the unpack failed.
`;

const PULL_POLICIES = ['always', 'missing', 'never'];
// Flags of ours (img-fetch's); ctr-spawn's come from ctr-spawn itself, so a flag
// it gains is never taken for the image here.
const FETCH_VALUES = ['pull', 'platform'];
const FETCH_SWITCHES = ['insecure', 'plain-http'];
// Flags every tool of the pipeline takes.
const COMMON_VALUES = ['root', 'log-format', 'progress'];
const COMMON_SWITCHES = ['quiet'];
const SHORT = { ...RUN_FLAGS.alias, h: 'help' };
// Signals that end the pipeline; those a terminal sends reach an interactive (foreground) one by themselves.
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
const FROM_TERMINAL = ['SIGINT', 'SIGQUIT'];
// After a stop signal, ctr-spawn is sent SIGTERM twice more this far apart: its third stop kills the container.
const ESCALATE_MS = 2000;

const here = dirname(realpathSync(fileURLToPath(import.meta.url)));
const tool = (name) => join(here, '..', 'tools', name, 'bin', `${name}.js`);

/** `--key=value` words for the flags of `args` named in `keys`. */
function flagsOf(args, keys) {
  const words = [];
  for (const key of keys) {
    for (const v of [args[key]].flat()) {
      if (v === undefined || v === false) continue;
      words.push(v === true ? `--${key}` : `--${key}=${v}`);
    }
  }
  return words;
}

/** Exits with `code` after a message, as a failed docker run does. */
function fail(code, message) {
  process.stderr.write(`conveyor-run: ${message}\n`);
  process.exit(code);
}

const args = minimist(process.argv.slice(2), {
  string: [...RUN_FLAGS.values, ...FETCH_VALUES],
  boolean: ['help', 'version', ...FETCH_SWITCHES, ...RUN_FLAGS.switches],
  alias: SHORT,
  stopEarly: true,
  // An unknown flag would take the image as its value: refuse it by name instead.
  unknown: (word) => (word.startsWith('-') && word !== '-' ? fail(125, `unknown flag ${word.replace(/=.*/, '')} (see --help)`) : true),
});
if (args.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
if (args.version) {
  const { VERSION } = await import('../lib-common/dist/version.js');
  process.stdout.write(`conveyor-run ${VERSION}\n`);
  process.exit(0);
}
if (args._.length === 0) fail(125, 'an IMAGE is required (see --help)');
const pull = args.pull ?? 'missing';
if (!PULL_POLICIES.includes(pull)) fail(125, `--pull must be always, missing or never, got ${JSON.stringify(pull)}`);
if ([args['check-flags']].flat().includes(true)) fail(125, "--check-flags is ctr-spawn's, not a run option");

const [image, ...command] = args._.map(String);
const common = flagsOf(args, [...COMMON_VALUES, ...COMMON_SWITCHES]);
const fetchFlags = [...common, ...flagsOf(args, ['platform', ...FETCH_SWITCHES]), `--pull=${pull}`];
const spawnKeys = Object.keys(args).filter(
  (key) => key !== '_' && key !== '--' && !(key.length === 1 && SHORT[key]) && ![...FETCH_VALUES, ...FETCH_SWITCHES, 'help', 'version'].includes(key),
);
// ctr-spawn's flags exactly as given (the common ones among them), minus ours.
const spawnFlags = flagsOf(args, spawnKeys);

// Every flag, before anything is pulled: ctr-spawn's own parser, so nothing is checked twice or differently.
const check = spawnSync(process.execPath, ['--', tool('ctr-spawn'), '--check-flags', ...spawnFlags], { stdio: ['ignore', 'ignore', 'inherit'] });
if (check.status !== 0) process.exit(check.status ?? 125);

// An interactive run stays in our process group, the terminal's foreground one,
// so that ctr-spawn may read the terminal; otherwise every tool gets a group of
// its own and the signals come from us only (never twice).
const interactive = [args.interactive, args.tty].flat().includes(true);
const detached = !interactive;
const fetch = spawn(process.execPath, ['--', tool('img-fetch'), ...fetchFlags, image], { stdio: ['ignore', 'pipe', 'inherit'], detached });
// On a terminal the pull shows its progress and the unpack none: a present image's
// run shows nothing but the container's output, as docker run's does.
const unpackFlags = process.stderr.isTTY && args.progress === undefined ? [...common, '--progress=none'] : common;
const unpack = spawn(process.execPath, ['--', tool('layer-unpack'), ...unpackFlags], { stdio: [fetch.stdout, 'pipe', 'inherit'], detached });
const ctr = spawn(process.execPath, ['--', tool('ctr-spawn'), ...spawnFlags, '--', ...command], { stdio: [unpack.stdout, 'inherit', 'inherit'], detached });
// Each pipe is the next tool's now: an early end downstream is an EPIPE upstream, not a reader held open by us.
fetch.stdout.destroy();
unpack.stdout.destroy();

const children = [fetch, unpack, ctr];
const ended = children.map(
  (child) =>
    new Promise((resolve) => {
      child.on('error', (error) => resolve({ code: 127, error }));
      child.on('close', (code, signal) => resolve({ code, signal }));
    }),
);
const running = (child) => child.exitCode === null && child.signalCode === null;
const send = (child, signal) => {
  try {
    if (running(child)) child.kill(signal);
  } catch {
    // gone between the check and the kill
  }
};

let received;
const timers = [];
for (const signal of FORWARDED) {
  process.on(signal, () => {
    if (!(interactive && FROM_TERMINAL.includes(signal))) for (const child of children) send(child, signal);
    if (received) return;
    received = signal;
    // A pid 1 without a handler (sh, sleep) ignores SIGINT and SIGTERM: ctr-spawn's third stop signal kills it.
    for (const step of [1, 2]) timers.push(setTimeout(() => send(ctr, 'SIGTERM'), step * ESCALATE_MS).unref());
  });
}

const [fetched, unpacked, result] = await Promise.all(ended);
for (const timer of timers) clearTimeout(timer);
for (const r of [fetched, unpacked, result]) if (r.error) process.stderr.write(`conveyor-run: ${r.error.message}\n`);
// A tool killed by a signal has no exit code: report 128+N, as a shell does.
const code = (r) => r.code ?? 128 + (os.constants.signals[r.signal] ?? 0);
if (received) {
  process.exitCode = 128 + os.constants.signals[received];
} else {
  // A failed pull or unpack is reported by that tool on stderr; its code wins
  // over ctr-spawn's "no input" so scripts see why nothing ran.
  process.exitCode = code(fetched) !== 0 ? code(fetched) : code(unpacked) !== 0 ? code(unpacked) : code(result);
}
