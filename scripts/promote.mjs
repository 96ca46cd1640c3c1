#!/usr/bin/env -S node --
// conveyor-promote: the usual CI promotion step, composed from the tools:
//   img-fetch --pull=missing SRC        (pull only when the store lacks it)
//   img-tag SRC DST                     (name it for its destination)
//   img-push DST                        (skips what DST's registry has, mounts what it holds elsewhere)
//   img-fetch --pull=always DST         (ask DST's registry what DST now is)
// and fails unless DST's digest there is SRC's. Prints img-push's `image`
// record on stdout; each tool reports its own failures on stderr, and the
// first failing tool's exit code is ours (1 for a digest that differs).
import { $, minimist } from 'zx';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { realpathSync } from 'node:fs';

const HELP = `Usage: conveyor-promote [OPTIONS] SRC DST

Promote an image: pull SRC if the store lacks it, name it DST, push DST, and
check that the registry now serves DST with SRC's digest. Prints the pushed
\`image\` record. The usual CI step between a test registry and a release one:
  img-fetch --pull=missing SRC; img-tag SRC DST; img-push DST; img-fetch DST

Options:
      --pull POLICY        for SRC: missing (default), always or never
      --platform P         os/arch[/variant] to pull SRC for
      --insecure           do not verify TLS certificates (and allow plain HTTP)
      --insecure-registry HOST  the same for this registry only (repeatable)
      --plain-http         talk plain HTTP to the registries
      --root DIR           store root
      --progress MODE      passed to the tools (auto, json, bar, none)
  -q, --quiet              no info messages
  -h, --help               show this help

Exit status: 0 promoted and verified, 1 a step failed or DST's digest differs, 2 usage.

Examples:
  conveyor-promote localhost:5000/team/app:rc1 registry.example.com/team/app:1.2
  conveyor-promote --root /srv/ci/store staging.example.com/app@sha256:4f3c… prod.example.com/app:stable
`;

const here = dirname(realpathSync(fileURLToPath(import.meta.url)));
const tool = (name) => join(here, '..', 'tools', name, 'bin', `${name}.js`);

const args = minimist(process.argv.slice(2), {
  string: ['pull', 'platform', 'root', 'progress', 'insecure-registry'],
  boolean: ['help', 'insecure', 'plain-http', 'quiet'],
  alias: { h: 'help', q: 'quiet' },
  unknown: (arg) => {
    if (!arg.startsWith('-')) return true;
    process.stderr.write(`conveyor-promote: unknown option ${arg} (see --help)\n`);
    process.exit(2);
  },
});

const say = (message) => {
  if (!args.quiet) process.stderr.write(`conveyor-promote: ${message}\n`);
};

/** Runs a tool with stdin closed and stderr shown; its stdout's records, or its exit code when it failed. */
async function step(name, toolArgs) {
  const result = await $({ stdio: ['ignore', 'pipe', 'inherit'], nothrow: true })`${process.execPath} -- ${tool(name)} ${toolArgs}`;
  if (result.exitCode !== 0) return { code: result.exitCode ?? 1 };
  const records = result.stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line));
  return { code: 0, records };
}

/** The last image record among a tool's records; a tool that printed none is a bug worth saying so. */
function imageOf(records, name) {
  const image = records.filter((r) => r.type === 'image').at(-1);
  if (!image) throw new Error(`${name} printed no image record`);
  return image;
}

async function main() {
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (args._.length !== 2) {
    process.stderr.write('conveyor-promote: SRC and DST are required (see --help)\n');
    return 2;
  }
  const [src, dst] = args._.map(String);
  const pull = args.pull ?? 'missing';
  if (!['missing', 'always', 'never'].includes(pull)) {
    process.stderr.write(`conveyor-promote: --pull must be missing, always or never, got ${JSON.stringify(pull)}\n`);
    return 2;
  }
  const common = [];
  if (args.root) common.push('--root', args.root);
  if (args.progress) common.push('--progress', args.progress);
  // img-tag's -q would silence its record: quiet goes to the others only.
  const quiet = args.quiet ? ['-q'] : [];
  const registry = [];
  if (args.insecure) registry.push('--insecure');
  if (args['plain-http']) registry.push('--plain-http');
  for (const host of [args['insecure-registry'] ?? []].flat()) registry.push('--insecure-registry', host);

  $.verbose = false;
  const fetched = await step('img-fetch', [
    ...common,
    ...quiet,
    ...registry,
    '--no-layers',
    '--pull',
    pull,
    ...(args.platform ? ['--platform', args.platform] : []),
    src,
  ]);
  if (fetched.code !== 0) return fetched.code;
  const source = imageOf(fetched.records, 'img-fetch');

  const tagged = await step('img-tag', [...common, source.ref, dst]);
  if (tagged.code !== 0) return tagged.code;
  const target = imageOf(tagged.records, 'img-tag').ref;

  const pushed = await step('img-push', [...common, ...quiet, ...registry, target]);
  if (pushed.code !== 0) return pushed.code;
  const image = imageOf(pushed.records, 'img-push');

  // What the registry now says DST is: a HEAD, answered from the store when it matches.
  const check = await step('img-fetch', [
    ...common,
    ...quiet,
    ...registry,
    '--no-layers',
    '--pull',
    'always',
    ...(args.platform ? ['--platform', args.platform] : []),
    target,
  ]);
  if (check.code !== 0) return check.code;
  const served = imageOf(check.records, 'img-fetch');
  if (served.digest !== source.digest || (image.indexDigest !== undefined && served.indexDigest !== image.indexDigest)) {
    process.stderr.write(
      `conveyor-promote: ${target} is ${served.indexDigest ?? served.digest} in its registry, not ${image.indexDigest ?? source.digest} as pushed from ${source.ref}\n`,
    );
    return 1;
  }
  process.stdout.write(`${JSON.stringify(image)}\n`);
  say(`promoted ${source.ref} to ${target} (${image.indexDigest ?? image.digest})`);
  return 0;
}

process.exitCode = await main();
