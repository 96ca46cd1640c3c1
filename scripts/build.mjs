#!/usr/bin/env -S node --
// conveyor-build: build, test and push in one go, composed from the tools:
//   img-build [-t REF]... [img-build flags] CONTEXT          (image records, one per -t)
//   img-build's image record | layer-unpack | ctr-spawn --entrypoint sh -- -c CMD   (--test CMD)
//   img-push REF...                                            (--push, only when the test passed)
// The test container's stdout goes to our stderr, so stdout carries records
// only: img-push's image records with --push, img-build's without.
// docs/conveyor-build.md is its manual.
import { minimist } from 'zx';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { realpathSync } from 'node:fs';
import os from 'node:os';

const HELP = `Usage: conveyor-build [OPTIONS] CONTEXT

Build an image with img-build, test it in a container, and push every -t name
when the test passes:
  img-build -t REF... CONTEXT
  img-build's image record | layer-unpack | ctr-spawn --entrypoint sh -- -c CMD
  img-push REF...
Nothing is pushed when the build or the test fails. The test's output goes to
stderr; stdout gets the image records (img-push's with --push, img-build's
without).

Options:
  -t, --tag REF            name the image (repeatable); every name is pushed
  -f, --file FILE          the Dockerfile (img-build's -f)
      --build-arg K=V      a build argument (repeatable)
      --target STAGE       build up to this stage
      --no-cache           run every step again
      --pull               fetch FROM images even when the store has them
      --label K=V          add a label to the image (repeatable)
      --network MODE       RUN steps' network: default, none or host
      --test CMD           run \`sh -c CMD\` in the new image; it must exit 0
      --test-image         run the image's own ENTRYPOINT and CMD as the test
      --push               push every -t name after the test passed
      --insecure           pulls and pushes: do not verify TLS certificates
      --insecure-registry HOST  the same for this registry only (repeatable)
      --plain-http         pulls and pushes: talk plain HTTP to the registry
      --ca-file FILE       pulls and pushes: also trust this CA certificate
      --root DIR           store root (every tool)
      --log-format FORMAT  text (default) or json (every tool)
      --progress MODE      auto, plain, json or none (img-build, img-push)
  -q, --quiet              no notes of ours, no progress
  -h, --help               show this help
      --version            print the version

Examples:
  conveyor-build -t localhost:5000/app:1.0 --test 'app --self-test' --push .
  conveyor-build -t app:dev --build-arg VERSION=1.2 --target runtime ./src
  conveyor-build -t registry.example.com/team/app:rc --test-image --push -f build/Dockerfile .

Exit status: 0 built (and tested, and pushed, as asked); 1 the build, the
unpack or a push failed (that tool's code); 2 usage (ours or img-build's,
a Dockerfile error included); 3 the test failed or could not start (nothing
was pushed); 128+N after signal N (SIGINT, SIGTERM, SIGHUP reach the tool
running, and nothing more starts).
`;

const TEST_FAILED = 3;
const BUILD_VALUES = ['file', 'build-arg', 'target', 'label', 'network'];
// --no-cache is minimist's negation of `cache` (as in img-build's own spec).
const BUILD_SWITCHES = ['pull'];
// Registry flags reach both img-build (FROM pulls) and img-push.
const REGISTRY_VALUES = ['insecure-registry', 'ca-file'];
const REGISTRY_SWITCHES = ['insecure', 'plain-http'];

const here = dirname(realpathSync(fileURLToPath(import.meta.url)));
const tool = (name) => join(here, '..', 'tools', name, 'bin', `${name}.js`);

function fail(code, message) {
  process.stderr.write(`conveyor-build: ${message}\n`);
  process.exit(code);
}

const args = minimist(process.argv.slice(2), {
  string: ['tag', 'test', 'root', 'log-format', 'progress', ...BUILD_VALUES, ...REGISTRY_VALUES],
  boolean: ['help', 'version', 'push', 'test-image', 'quiet', 'cache', ...BUILD_SWITCHES, ...REGISTRY_SWITCHES],
  alias: { t: 'tag', f: 'file', q: 'quiet', h: 'help' },
  default: { cache: true },
  unknown: (word) => (word.startsWith('-') && word !== '-' ? fail(2, `unknown option ${word.replace(/=.*/, '')} (see --help)`) : true),
});

/** `--key=value` words for the flags of `args` named in `keys`, repeated ones repeated. */
function flagsOf(keys) {
  const words = [];
  for (const key of keys) {
    for (const value of [args[key]].flat()) {
      if (value === undefined || value === false) continue;
      words.push(value === true ? `--${key}` : `--${key}=${value}`);
    }
  }
  return words;
}

const say = (message) => {
  if (!args.quiet) process.stderr.write(`conveyor-build: ${message}\n`);
};

// The tools running now, so a signal to us reaches them (a CI runner's SIGTERM goes to us alone).
const running = new Set();
let received;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    received ??= signal;
    for (const child of running) child.kill(signal);
  });
}
function track(child) {
  running.add(child);
  child.on('close', () => running.delete(child));
  return child;
}

/**
 * Runs tool `name`; stdin from `input` (closed when absent), stderr shown.
 * Resolves to its exit code (128+N when killed) and the records it printed.
 */
function runTool(name, toolArgs, input) {
  return new Promise((resolve) => {
    const child = track(spawn(process.execPath, ['--', tool(name), ...toolArgs], { stdio: ['pipe', 'pipe', 'inherit'] }));
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
    child.on('error', (error) => resolve({ code: 127, records: [], error }));
    child.on('close', (code, signal) => {
      const records = stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .flatMap((line) => {
          try {
            return [JSON.parse(line)];
          } catch {
            return [];
          }
        });
      resolve({ code: code ?? 128 + (os.constants.signals[signal] ?? 0), records });
    });
  });
}

/**
 * The test: the image record through layer-unpack into ctr-spawn, whose stdout
 * goes to our stderr (ours is for records). Resolves to ctr-spawn's exit code,
 * or layer-unpack's when the unpack failed.
 */
function runTest(image, common, command) {
  return new Promise((resolve) => {
    const unpack = track(spawn(process.execPath, ['--', tool('layer-unpack'), ...common, '--progress=none'], { stdio: ['pipe', 'pipe', 'inherit'] }));
    // --entrypoint sh: the test command runs whatever the image's ENTRYPOINT is, as `docker run --entrypoint sh IMAGE -c CMD`.
    const spawnArgs = command === undefined ? [] : ['--entrypoint', 'sh', '--', '-c', command];
    const ctr = track(spawn(process.execPath, ['--', tool('ctr-spawn'), ...common, ...spawnArgs], { stdio: [unpack.stdout, process.stderr, 'inherit'] }));
    unpack.stdout.destroy();
    unpack.stdin.on('error', () => {});
    unpack.stdin.end(`${JSON.stringify(image)}\n`);
    const ended = (child) =>
      new Promise((done) => {
        child.on('error', () => done(127));
        child.on('close', (code, signal) => done(code ?? 128 + (os.constants.signals[signal] ?? 0)));
      });
    Promise.all([ended(unpack), ended(ctr)]).then(([unpacked, ran]) => resolve({ unpacked, ran }));
  });
}

async function main() {
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (args.version) {
    const { VERSION } = await import('../lib-common/dist/version.js');
    process.stdout.write(`conveyor-build ${VERSION}\n`);
    return 0;
  }
  if (args._.length !== 1) fail(2, args._.length === 0 ? 'a CONTEXT is required (see --help)' : `one CONTEXT only, got ${args._.length}`);
  const tags = [args.tag ?? []].flat().map(String);
  if (tags.some((tag) => tag === '')) fail(2, '-t needs a reference');
  if (args.push && tags.length === 0) fail(2, '--push needs at least one -t name to push');
  const tests = [args.test].flat().filter((v) => v !== undefined);
  if (tests.length > 1) fail(2, '--test is given once');
  if (tests.length === 1 && tests[0] === '') fail(2, "--test needs a command (--test-image runs the image's own)");
  if (tests.length === 1 && args['test-image']) fail(2, '--test and --test-image exclude each other');

  const common = flagsOf(['root', 'log-format']);
  const progress = args.quiet ? ['--progress=none'] : flagsOf(['progress']);
  const built = await runTool('img-build', [
    ...common,
    ...progress,
    // One word per flag and `--` before the context: a name or a directory starting with `-` is never a flag.
    ...tags.map((tag) => `--tag=${tag}`),
    ...flagsOf([...BUILD_VALUES, ...BUILD_SWITCHES, ...REGISTRY_VALUES, ...REGISTRY_SWITCHES]),
    ...(args.cache === false ? ['--no-cache'] : []),
    '--',
    String(args._[0]),
  ]);
  if (built.code !== 0 || received) return built.code;
  const images = built.records.filter((r) => r.type === 'image');
  if (images.length === 0) fail(1, 'img-build printed no image record');
  say(`built ${images[0].digest}${tags.length > 0 ? ` as ${tags.join(', ')}` : ''}`);

  if (tests.length === 1 || args['test-image']) {
    const { unpacked, ran } = await runTest(images[0], common, tests[0]);
    if (unpacked !== 0) {
      process.stderr.write(`conveyor-build: the image could not be unpacked for its test (layer-unpack exited ${unpacked}); nothing pushed\n`);
      return unpacked;
    }
    if (ran !== 0) {
      const why = ran === 125 ? 'the container could not start' : ran === 126 ? 'not executable' : ran === 127 ? 'command not found' : `exit status ${ran}`;
      process.stderr.write(`conveyor-build: the test failed (${why}); nothing pushed\n`);
      return TEST_FAILED;
    }
    say('the test passed');
  }

  if (received) return 1;
  if (!args.push) {
    for (const image of images) process.stdout.write(`${JSON.stringify(image)}\n`);
    return 0;
  }
  const pushed = await runTool('img-push', [
    ...common,
    // img-build's `plain` (step lines) is the pushing tools' `bar`.
    ...progress.map((word) => (word === '--progress=plain' ? '--progress=bar' : word)),
    ...flagsOf([...REGISTRY_VALUES, ...REGISTRY_SWITCHES]),
    '--',
    ...images.map((image) => image.ref),
  ]);
  for (const record of pushed.records) if (record.type === 'image') process.stdout.write(`${JSON.stringify(record)}\n`);
  if (pushed.code !== 0) return pushed.code;
  say(`pushed ${images.map((image) => image.ref).join(', ')}`);
  return 0;
}

const code = await main();
// After a signal nothing more was started; the exit says which signal, as a shell's does.
process.exitCode = received ? 128 + os.constants.signals[received] : code;
