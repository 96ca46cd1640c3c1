/**
 * conveyor-build (scripts/build.mjs) against a real registry: a Dockerfile
 * FROM the busybox fixture (in the store under its registry name, so the
 * build needs no pull) is built by img-build, tested in a real container and
 * pushed under every -t name when the test passes; a failing test, a test
 * that cannot start, a failing RUN and a Dockerfile error push nothing and
 * exit 3, 3, 1 and 2; usage errors exit 2 before anything is built.
 */
import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { busyboxLayout, importToStore, REPO_ROOT } from './helpers/fixtures.js';
import { rawManifest, startRegistry } from './helpers/registry.js';
import { removeStore, tempStore } from './helpers/rootfs.js';
import { deleteAllContainers } from './helpers/containers.js';

const run = promisify(execFile);
const BUILD = join(REPO_ROOT, 'scripts', 'build.mjs');
const env = { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config', SOURCE_DATE_EPOCH: '0' };
const build = (args: string[], cwd?: string) =>
  run(process.execPath, [BUILD, ...args], { env, cwd, maxBuffer: 1 << 26 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e) => ({ code: e.code as number, stdout: (e.stdout ?? '') as string, stderr: (e.stderr ?? '') as string }),
  );
const records = (stdout: string) =>
  stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line));
/** Manifest PUTs to `repo` in a slice of the registry's access log. */
const manifestPuts = (log: string, repo: string) => (log.match(new RegExp(`"PUT /v2/${repo}/manifests/`, 'g')) ?? []).length;

const reg = await startRegistry();
t.teardown(() => reg.stop());
const root = tempStore('conveyor-build-');
t.teardown(async () => {
  await deleteAllContainers(root);
  removeStore(root);
});
const base = `${reg.host}/base/busybox:latest`;
importToStore(`${busyboxLayout()}:latest`, root, base);

/** A build context with this Dockerfile. */
function context(dockerfile: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-build-ctx-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'Dockerfile'), dockerfile);
  writeFileSync(join(dir, 'greeting.txt'), 'hello from the context\n');
  return dir;
}

const good = context(`FROM ${base}\nCOPY greeting.txt /greeting.txt\nRUN echo yes > /built\nCMD ["cat", "/greeting.txt"]\n`);

t.test('a passing test pushes every name; the registry serves what was built', async (t) => {
  const mark = reg.logs().length;
  const r = await build([
    '--root',
    root,
    '-t',
    `${reg.host}/app:ok`,
    '-t',
    `${reg.host}/app:also`,
    '--test',
    'test "$(cat /built)" = yes && echo TEST-RAN',
    '--push',
    good,
  ]);
  t.equal(r.code, 0, r.code === 0 ? 'exit 0' : r.stderr);
  const pushed = records(r.stdout);
  t.strictSame(pushed.map((p) => p.ref).sort(), [`${reg.host}/app:also`, `${reg.host}/app:ok`]);
  t.ok(pushed.every((p) => p.type === 'image'));
  t.match(r.stderr, /TEST-RAN/, "the test's output is on stderr");
  t.notMatch(r.stdout, /TEST-RAN/, 'never on stdout');
  for (const tag of ['ok', 'also']) t.equal((await rawManifest(reg, `app:${tag}`)).digest, pushed[0].digest, `app:${tag} served as built`);
  t.equal(manifestPuts(reg.logs().slice(mark), 'app'), 2);
});

t.test('--test-image runs the image CMD; without --push nothing is pushed and the build records come out', async (t) => {
  const mark = reg.logs().length;
  const r = await build(['--root', root, '-t', `${reg.host}/app:local`, '--test-image', good]);
  t.equal(r.code, 0, r.code === 0 ? 'exit 0' : r.stderr);
  t.match(r.stderr, /hello from the context/);
  const built = records(r.stdout);
  t.equal(built.length, 1);
  t.match(built[0], { type: 'image', ref: `${reg.host}/app:local` });
  t.equal(manifestPuts(reg.logs().slice(mark), 'app'), 0);
});

t.test('img-build flags pass through: --build-arg, --no-cache, --label, -f', async (t) => {
  const dir = context(`FROM ${base}\nARG GREETING=unset\nRUN echo "$GREETING" > /greeting\n`);
  writeFileSync(join(dir, 'Other.dockerfile'), `FROM ${base}\nARG GREETING=unset\nRUN echo "other $GREETING" > /greeting\n`);
  const args = ['--root', root, '--build-arg', 'GREETING=hi', '--label', 'team=ci', '--test', 'grep -qx "other hi" /greeting'];
  const first = await build([...args, '-f', join(dir, 'Other.dockerfile'), dir]);
  t.equal(first.code, 0, first.stderr);
  t.match(records(first.stdout), [{ type: 'image', config: { Labels: { team: 'ci' } } }]);
  const again = await build([...args, '-f', join(dir, 'Other.dockerfile'), dir]);
  t.match(again.stderr, /Using cache/, 'the second build hits the cache');
  const uncached = await build([...args, '--no-cache', '-f', join(dir, 'Other.dockerfile'), dir]);
  t.equal(uncached.code, 0, uncached.stderr);
  t.notMatch(uncached.stderr, /Using cache/, '--no-cache runs every step');
});

t.test('failures push nothing', async (t) => {
  const cases: { name: string; args: string[]; code: number; stderr: RegExp }[] = [
    { name: 'the test exits non-zero', args: ['--test', 'echo checking; exit 7'], code: 3, stderr: /test failed \(exit status 7\)/ },
    {
      name: 'the test cannot start',
      args: ['--test-image', context(`FROM ${base}\nCMD ["/no/such/program"]\n`)],
      code: 3,
      stderr: /test failed \((command not found|the container could not start)\)/,
    },
    { name: 'a RUN fails', args: ['--test', 'true', context(`FROM ${base}\nRUN exit 1\n`)], code: 1, stderr: /img-build/ },
    { name: 'a Dockerfile error', args: ['--test', 'true', context(`FROM ${base}\nFROBNICATE now\n`)], code: 2, stderr: /Dockerfile:2/ },
  ];
  for (const c of cases) {
    const mark = reg.logs().length;
    const contextArg = c.args.at(-1)!.startsWith('/') ? [] : [good];
    const r = await build(['--root', root, '-q', '-t', `${reg.host}/bad:${cases.indexOf(c)}`, ...c.args, '--push', ...contextArg]);
    t.equal(r.code, c.code, `${c.name}: exit ${c.code}\n${r.stderr}`);
    t.match(r.stderr, c.stderr, c.name);
    t.equal(r.stdout, '', `${c.name}: no record`);
    t.equal(manifestPuts(reg.logs().slice(mark), 'bad'), 0, `${c.name}: nothing pushed`);
  }
});

t.test('a context directory named like a flag, after --, is the context', async (t) => {
  const parent = mkdtempSync(join(tmpdir(), 'conveyor-build-dash-'));
  t.teardown(() => rmSync(parent, { recursive: true, force: true }));
  mkdirSync(join(parent, '-dash'));
  writeFileSync(join(parent, '-dash', 'Dockerfile'), `FROM ${base}\nLABEL from=dash\n`);
  const r = await build(['--root', root, '-q', '-t', `${reg.host}/app:dash`, '--', '-dash'], parent);
  t.equal(r.code, 0, r.stderr);
  const built = records(r.stdout);
  t.match(built, [{ type: 'image', ref: `${reg.host}/app:dash`, config: { Labels: { from: 'dash' } } }]);
});

t.test('SIGTERM during a RUN reaches img-build: exit 143, nothing pushed', async (t) => {
  const slow = context(`FROM ${base}\nRUN echo started-slow-step && sleep 60\n`);
  const mark = reg.logs().length;
  const child = spawn(process.execPath, [BUILD, '--root', root, '-t', `${reg.host}/slow:1`, '--test', 'true', '--push', slow], { env });
  let stderr = '';
  let stdout = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  const ended = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  await new Promise<void>((resolve) =>
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
      if (stderr.includes('started-slow-step')) resolve();
    }),
  );
  child.kill('SIGTERM');
  t.equal(await ended, 143, stderr);
  t.equal(stdout, '', 'no record');
  t.equal(manifestPuts(reg.logs().slice(mark), 'slow'), 0, 'nothing pushed');
});

t.test('usage errors exit 2 before anything is built', async (t) => {
  const cases = [
    [],
    [good, good],
    ['--bogus', good],
    ['--push', good],
    ['-t', '', good],
    ['--test', '', good],
    ['--test', 'true', '--test-image', good],
    ['--test', 'a', '--test', 'b', good],
  ];
  for (const args of cases) {
    const r = await build(['--root', root, ...args]);
    t.equal(r.code, 2, JSON.stringify(args));
    t.match(r.stderr, /^conveyor-build: /, JSON.stringify(args));
  }
  const help = await build(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /Usage: conveyor-build/);
});
