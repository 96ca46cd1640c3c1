/**
 * How a tool starts (lib-common/start.ts, scripts/build/bundle.mjs): every bin runs its bundle with
 * an accepted code cache after `make build`; a corrupt, foreign or flag-mismatched cache still runs
 * the tool (a plain compile); no bundle, or one older than the last tsc build, runs dist/cli.js; the
 * entries a tool starts as a process or thread (ctr-spawn's supervisor and relay, layer-unpack's
 * workers) are bundled where the bundled code looks for them and import only builtins; the
 * supervisor and relay start alone (layer-unpack's and ctr-spawn's own tests run them all from the
 * bundles, which are what their bins run).
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isBuiltin } from 'node:module';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from './helpers/fixtures.js';
import { toolPath } from './helpers/tools.js';

const TOOLS = readdirSync(join(REPO_ROOT, 'tools')).filter((name) => existsSync(join(REPO_ROOT, 'tools', name, 'package.json')));
const START = pathToFileURL(join(REPO_ROOT, 'lib-common', 'dist', 'start.js')).href;
const DEBUG_ENV = { ...process.env, CONVEYOR_START_DEBUG: '1' };

/** Runs `node [nodeFlags] BIN args` with the start-up report on stderr. */
function runBin(bin: string, args: string[], nodeFlags: string[] = []) {
  const run = spawnSync(process.execPath, [...nodeFlags, '--', bin, ...args], { env: DEBUG_ENV, encoding: 'utf8', timeout: 60_000 });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** Runs startTool on a tool directory as a bin would (bin/start.mjs there: a copy of a tool has no node_modules to find lib-common in). */
function startIn(toolDir: string, args: string[]) {
  const bin = join(toolDir, 'bin', 'start.mjs');
  mkdirSync(join(toolDir, 'bin'), { recursive: true });
  writeFileSync(
    bin,
    `import { startTool } from ${JSON.stringify(START)};\nawait startTool(new URL('..', import.meta.url), { env: process.env, stderr: process.stderr });\n`,
  );
  return runBin(bin, args);
}

t.test('every bin runs its bundle, with its code cache accepted', async (t) => {
  for (const tool of TOOLS) {
    const bundle = join(REPO_ROOT, 'tools', tool, 'bundle', 'cli.cjs');
    const run = runBin(toolPath(tool), ['--version']);
    t.equal(run.code, 0, `${tool} --version exits 0`);
    t.match(run.stdout, new RegExp(`^${tool} \\d+\\.\\d+\\.\\d+\\n$`), `${tool} prints its version`);
    t.match(run.stderr, `start: bundle ${bundle} (cache accepted)`, `${tool} ran ${bundle} with its cache (make build made both)`);
  }
});

t.test('a cache V8 does not take still runs the tool', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-start-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tool = join(dir, 'img-ls');
  cpSync(join(REPO_ROOT, 'tools', 'img-ls', 'bundle'), join(tool, 'bundle'), { recursive: true });
  const cacheFile = join(tool, 'bundle', 'cli.cache');
  const real = readFileSync(cacheFile);
  const caches: [string, Buffer][] = [
    ['the real cache (the copy runs as the original)', real],
    ['random bytes', createHash('sha512').update('not a cache').digest()],
    ['a truncated cache', real.subarray(0, real.length >> 1)],
    // V8 would take it (it checks the source's length, not its text): the build id at its head tells.
    ['the cache of an earlier build of the same bundle', Buffer.concat([Buffer.from('0123456789abcdef'), real.subarray(16)])],
    ['a cache V8 never made, under the right build id', Buffer.concat([real.subarray(0, 16), Buffer.from('not a V8 code cache')])],
    ["another tool's cache", readFileSync(join(REPO_ROOT, 'tools', 'ctr-ls', 'bundle', 'cli.cache'))],
    ['an empty file', Buffer.alloc(0)],
  ];
  for (const [what, bytes] of caches) {
    writeFileSync(cacheFile, bytes);
    const run = startIn(tool, ['--version']);
    t.equal(run.code, 0, `${what}: exits 0`);
    t.equal(run.stdout, 'img-ls 0.1.0\n', `${what}: the tool ran`);
    t.match(
      run.stderr,
      what.startsWith('the real') ? '(cache accepted)' : '(cache rejected)',
      `${what}: ${what.startsWith('the real') ? 'accepted' : 'rejected'}`,
    );
  }
  rmSync(cacheFile);
  const run = startIn(tool, ['--version']);
  t.equal(run.stdout, 'img-ls 0.1.0\n', 'no cache: the tool runs');
  t.match(run.stderr, '(cache absent)', 'no cache: compiled from the source');

  // V8 takes a cache only under the flags it was made with (the bins run with none).
  const flagged = runBin(toolPath('img-ls'), ['--version'], ['--stack-size=900']);
  t.equal(flagged.stdout, 'img-ls 0.1.0\n', 'another V8 flag: the tool runs');
  t.match(flagged.stderr, '(cache rejected)', 'another V8 flag: the cache is rejected');
});

t.test('no bundle, or one older than the last tsc build, runs dist/cli.js', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-start-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tool = join(dir, 'fake');
  mkdirSync(join(tool, 'dist'), { recursive: true });
  mkdirSync(join(tool, 'bundle'));
  writeFileSync(join(tool, 'dist', 'cli.js'), "process.stdout.write('from dist\\n');\n");
  writeFileSync(join(tool, 'package.json'), '{"type": "module"}\n');

  const missing = startIn(tool, []);
  t.equal(missing.stdout, 'from dist\n', 'no bundle: dist/cli.js runs');
  t.match(missing.stderr, '(no bundle)');

  writeFileSync(
    join(tool, 'bundle', 'cli.cjs'),
    "// conveyor-bundle 0123456789abcdef built-from: tsconfig.tsbuildinfo\nprocess.stdout.write('from bundle\\n');\n",
  );
  writeFileSync(join(tool, 'tsconfig.tsbuildinfo'), '{}');
  const past = new Date(Date.now() - 60_000);
  utimesSync(join(tool, 'tsconfig.tsbuildinfo'), past, past);
  const current = startIn(tool, []);
  t.equal(current.stdout, 'from bundle\n', 'a bundle newer than the build runs');
  t.match(current.stderr, '(cache absent)');

  const future = new Date(Date.now() + 60_000);
  utimesSync(join(tool, 'tsconfig.tsbuildinfo'), future, future);
  const stale = startIn(tool, []);
  t.equal(stale.stdout, 'from dist\n', 'a tsc build after the bundle: dist/cli.js runs, not stale code');
  t.match(stale.stderr, '(bundle older than the build)');
});

t.test('a bin without a bundle (a tsc-only build) runs dist/cli.js', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-start-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tool = join(dir, 'img-ls');
  cpSync(join(REPO_ROOT, 'tools', 'img-ls', 'bin'), join(tool, 'bin'), { recursive: true });
  // dist/ as it is: its imports resolve from where it really lives.
  symlinkSync(join(REPO_ROOT, 'tools', 'img-ls', 'dist'), join(tool, 'dist'));
  const run = runBin(join(tool, 'bin', 'img-ls.js'), ['--version']);
  t.equal(run.code, 0);
  t.equal(run.stdout, 'img-ls 0.1.0\n', 'the tool ran from dist/');
  t.match(run.stderr, '(no bundle)');
});

t.test('the entries a bundle starts are bundled where it looks for them', async (t) => {
  // bundle.mjs writes `new URL("./x.js", new URL("./place.js", __conveyorBundleRoot).href)` for each started entry.
  const pattern = /new URL\("([^"]+)", new URL\("([^"]+)", __conveyorBundleRoot\)\.href\)/g;
  const expected = [
    'ctr-spawn/bundle/supervisor/cli.js',
    'ctr-spawn/bundle/ports/relay/cli.js',
    'layer-unpack/bundle/inflate-worker.js',
    'layer-unpack/bundle/apply/writer-worker.js',
  ];
  const found = new Set<string>();
  for (const tool of TOOLS) {
    const root = join(REPO_ROOT, 'tools', tool, 'bundle');
    for (const file of readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((f) => /\.c?js$/.test(f))) {
      for (const [, target, place] of readFileSync(join(root, file), 'utf8').matchAll(pattern)) {
        const url = new URL(target, new URL(place, pathToFileURL(`${root}/`)));
        t.ok(existsSync(url), `${tool}/bundle/${file}: ${url.pathname} exists`);
        found.add(url.pathname.slice(join(REPO_ROOT, 'tools').length + 1));
      }
    }
  }
  for (const entry of expected) t.ok(found.has(entry), `${entry} is started from a bundle`);
});

t.test('the bundled supervisor and relay run on their own; the bundled entries need nothing but builtins', async (t) => {
  const spawnDir = join(REPO_ROOT, 'tools', 'ctr-spawn', 'bundle');
  // End of file before an order: ctr-spawn gave up, and the supervisor goes quietly.
  const supervisor = spawnSync(process.execPath, [join(spawnDir, 'supervisor', 'cli.js')], { input: '', encoding: 'utf8', timeout: 60_000 });
  t.equal(supervisor.status, 0, 'the supervisor loads and exits on an empty order');
  t.notMatch(supervisor.stderr, /Cannot find|ERR_MODULE/, 'nothing is missing from it');
  const relay = spawnSync(process.execPath, [join(spawnDir, 'ports', 'relay', 'cli.js')], { encoding: 'utf8', timeout: 60_000 });
  t.not(relay.status, 0, 'the relay loads and refuses to run without its owner');
  t.notMatch(relay.stderr, /Cannot find|ERR_MODULE/, 'nothing is missing from it');

  // Every module a bundled entry imports or requires is a builtin: it runs wherever it is copied or linked.
  for (const tool of TOOLS) {
    const root = join(REPO_ROOT, 'tools', tool, 'bundle');
    for (const file of readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((f) => /\.c?js$/.test(f))) {
      const text = readFileSync(join(root, file), 'utf8');
      const specifiers = [...text.matchAll(/^import .* from ["']([^"']+)["'];$/gm), ...text.matchAll(/\brequire\(["']([^"']+)["']\)/g)].map((m) => m[1]);
      t.ok(specifiers.length > 0, `${tool}/bundle/${file}: its imports are seen`);
      const foreign = specifiers.filter((specifier) => !isBuiltin(specifier));
      t.same(foreign, [], `${tool}/bundle/${file} imports only builtins`);
    }
  }
});

/** Preloaded into a run (a -r module is no V8 flag: the cache is still taken): the builtins it loaded, on stderr at exit. */
const MODULE_LIST = `process.on('exit', () => require('node:fs').writeSync(2, JSON.stringify(process.moduleLoadList) + '\\n'));\n`;

t.test('--help and --version make no stdio stream (node:stream is most of a start-up) and print all of their text', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-start-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const preload = join(dir, 'module-list.cjs');
  writeFileSync(preload, MODULE_LIST);
  for (const tool of TOOLS) {
    for (const flag of tool === 'img-ls' ? ['--help', '--version'] : ['--help']) {
      const run = spawnSync(process.execPath, ['-r', preload, toolPath(tool), flag], { encoding: 'utf8', timeout: 60_000 });
      t.equal(run.status, 0, `${tool} ${flag} exits 0`);
      t.match(run.stdout, flag === '--help' ? /^Usage: .*\n[\s\S]*\nExamples?:\n[\s\S]*\n$/ : `${tool} 0.1.0\n`, `${tool} ${flag}: its whole text`);
      const loaded: string[] = JSON.parse(run.stderr);
      t.same(
        loaded.filter((name) => /^NativeModule (stream|net|tty|internal\/fs\/sync_write_stream|internal\/modules\/esm\/loader)$/.test(name)),
        [],
        `${tool} ${flag} loads no stream and not node:module`,
      );
    }
  }
  // A usage error is a failure as any other: a message on stderr and an error record on stdout.
  const usage = spawnSync(process.execPath, [toolPath('img-ls'), '--no-such-flag'], { encoding: 'utf8', timeout: 60_000 });
  t.equal(usage.status, 2, 'a usage error exits 2');
  t.match(usage.stderr, 'img-ls: unknown flag --no-such-flag');
  t.match(JSON.parse(usage.stdout), { type: 'error', code: 'ERR_USAGE', tool: 'img-ls' }, 'and writes its error record');
});

t.test('--help into a pipe already closed ends quietly with 0', async (t) => {
  const child = spawn(process.execPath, [toolPath('img-ls'), '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Closed before the tool has started (a start takes tens of ms): its write meets EPIPE.
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const code = await new Promise((resolve) => child.on('close', resolve));
  t.equal(code, 0, 'exit 0');
  t.equal(stderr, '', 'nothing on stderr');
});
