#!/usr/bin/env node
// conveyor-run: what `docker run IMAGE [COMMAND...]` does, composed from the tools:
//   img-fetch --pull=missing IMAGE | layer-unpack | ctr-spawn [OPTIONS] -- COMMAND
// Pulls only when the image is missing, reuses unpacked layers, and exits with
// the container's own exit code (125/126/127 when it could not start). With -d,
// ctr-spawn's container record comes out and the container runs on detached.
import { $, minimist } from 'zx';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { realpathSync } from 'node:fs';
import os from 'node:os';
import { RUN_FLAGS } from '../tools/ctr-spawn/dist/flags.js';

const HELP = `Usage: conveyor-run [OPTIONS] IMAGE [COMMAND [ARG...]]

Run a command in a new container, pulling the image first if it is not in the
store: img-fetch --pull=missing | layer-unpack | ctr-spawn.

Options are ctr-spawn's (see ctr-spawn --help: -d, --name, --rm, -e, -v, -m...),
plus:
      --pull POLICY     always, missing (default) or never
      --platform P      os/arch[/variant] to pull
      --insecure        do not verify the registry's TLS certificate
      --root DIR        store root

Examples:
  conveyor-run busybox echo hello
  conveyor-run -e GREETING=hi -v /tmp:/data localhost:5000/app:v1
  conveyor-run --memory 64m --pids-limit 50 alpine sh -c 'ulimit -a'
  conveyor-run -d --name web busybox httpd -f -p 8080   # prints a container record
  conveyor-run -d --rm busybox sh -c 'date; sleep 60'   # removed when it ends
`;

// ctr-spawn's flags come from ctr-spawn itself, so a flag it gains is never
// taken for the image here (`--print-spec alpine` once read alpine as its value).
const FETCH_VALUE_FLAGS = ['pull', 'platform', 'root'];
const SHORT = { ...RUN_FLAGS.alias, h: 'help' };

const here = dirname(realpathSync(fileURLToPath(import.meta.url)));
const tool = (name) => join(here, '..', 'tools', name, 'bin', `${name}.js`);

const args = minimist(process.argv.slice(2), {
  string: [...RUN_FLAGS.values, ...FETCH_VALUE_FLAGS],
  boolean: ['help', 'insecure', 'plain-http', ...RUN_FLAGS.switches],
  alias: SHORT,
  stopEarly: true,
});
if (args.help) {
  process.stdout.write(HELP);
} else if (args._.length === 0) {
  process.stderr.write('conveyor-run: an IMAGE is required (see --help)\n');
  process.exitCode = 2;
} else {
  const [image, ...command] = args._.map(String);
  const common = args.root ? ['--root', args.root] : [];
  const fetchFlags = [...common, '--pull', args.pull ?? 'missing'];
  if (args.platform) fetchFlags.push('--platform', args.platform);
  if (args.insecure) fetchFlags.push('--insecure');
  if (args['plain-http']) fetchFlags.push('--plain-http');

  // Re-serialise the ctr-spawn flags exactly as given, minus the ones meant for img-fetch.
  const spawnFlags = [...common];
  const { _, pull, platform, insecure, root, help, ...rest } = args;
  for (const [key, value] of Object.entries(rest)) {
    if (key.length === 1 && SHORT[key]) continue;
    if (key === 'plain-http') continue;
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v === false) continue;
      spawnFlags.push(v === true ? `--${key}` : `--${key}=${v}`);
    }
  }

  $.verbose = false;
  const fetch = $({ stdio: ['ignore', 'pipe', 'inherit'], nothrow: true })`${process.execPath} ${tool('img-fetch')} ${fetchFlags} ${image}`;
  const unpack = $({ stdio: ['pipe', 'pipe', 'inherit'], nothrow: true })`${process.execPath} ${tool('layer-unpack')} ${common}`;
  const spawn = $({ stdio: ['pipe', 'inherit', 'inherit'], nothrow: true })`${process.execPath} ${tool('ctr-spawn')} ${spawnFlags} -- ${command}`;
  const result = await fetch.pipe(unpack).pipe(spawn);
  const fetched = await fetch;
  const unpacked = await unpack;
  // A failed pull or unpack is reported by that tool on stderr; its code wins
  // over ctr-spawn's "no input" so scripts see why nothing ran.
  // A tool killed by a signal has no exit code: report 128+N, as a shell does.
  const code = (r) => r.exitCode ?? 128 + (os.constants.signals[r.signal] ?? 0);
  process.exitCode = code(fetched) !== 0 ? code(fetched) : code(unpacked) !== 0 ? code(unpacked) : code(result);
}
