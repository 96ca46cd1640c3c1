/**
 * How a tool starts (lib-common/start.ts, cli-head.ts, scripts/build/bundle.mjs): every bin requires
 * its bundle's head, which answers --help and --version alone, and runs the body (the whole tool)
 * with an accepted code cache for anything else after `make build`; a usage error is reported by
 * the body as before; a corrupt, foreign or flag-mismatched cache still runs the tool (a plain
 * compile); no head, one older than the last tsc build, or a body missing or of another build runs
 * dist/cli.js; the entries a tool starts as a process or thread (ctr-spawn's supervisor and relay,
 * layer-unpack's workers) are bundled where the bundled code looks for them and import only
 * builtins; the supervisor and relay start alone (layer-unpack's and ctr-spawn's own tests run them
 * all from the bundles, which are what their bins run); the runs the build trains the warm
 * pipeline's caches with run whole and leave nothing behind.
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
import { removeStore, tempStore } from './helpers/rootfs.js';
import { toolPath } from './helpers/tools.js';

const TOOLS = readdirSync(join(REPO_ROOT, 'tools')).filter((name) => existsSync(join(REPO_ROOT, 'tools', name, 'package.json')));
const DEBUG_ENV = { ...process.env, CONVEYOR_START_DEBUG: '1' };

/** Runs `node [nodeFlags] BIN args` with the start-up report on stderr. */
function runBin(bin: string, args: string[], nodeFlags: string[] = [], env: NodeJS.ProcessEnv = {}) {
  const run = spawnSync(process.execPath, [...nodeFlags, '--', bin, ...args], { env: { ...DEBUG_ENV, ...env }, encoding: 'utf8', timeout: 60_000 });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** A copy of img-ls's bin and bundle in `dir` (its dist/ linked: its imports resolve where it really lives); returns the copy's bin. */
function copyImgLs(dir: string): string {
  const tool = join(dir, 'img-ls');
  for (const part of ['bin', 'bundle', 'package.json']) cpSync(join(REPO_ROOT, 'tools', 'img-ls', part), join(tool, part), { recursive: true });
  symlinkSync(join(REPO_ROOT, 'tools', 'img-ls', 'dist'), join(tool, 'dist'));
  return join(tool, 'bin', 'img-ls.js');
}

/** What a usage error prints, from the body or dist/cli.js alike (as before the head existed). */
const USAGE_MESSAGE = 'img-ls: unknown flag --no-such-flag (see --help)\n';

t.test('every head answers --help and --version as its tool does; every body runs with its code cache accepted', async (t) => {
  for (const tool of TOOLS) {
    const head = join(REPO_ROOT, 'tools', tool, 'bundle', 'head.cjs');
    const body = join(REPO_ROOT, 'tools', tool, 'bundle', 'cli.cjs');
    const version = runBin(toolPath(tool), ['--version']);
    t.equal(version.code, 0, `${tool} --version exits 0`);
    t.match(version.stdout, new RegExp(`^${tool} \\d+\\.\\d+\\.\\d+\\n$`), `${tool} prints its version`);
    t.equal(version.stderr, `start: head ${head}\n`, `${tool} --version: the head answered, the body was not loaded`);
    // A usage error is the body's to report: it runs, with its cache.
    const usage = runBin(toolPath(tool), ['--no-such-flag']);
    // ctr-spawn's own failures exit 125, as docker run's (its exitCodeFor).
    t.equal(usage.code, tool === 'ctr-spawn' ? 125 : 2, `${tool} --no-such-flag exits 2 (ctr-spawn 125)`);
    t.match(usage.stderr, `start: bundle ${body} (cache accepted)\n`, `${tool}: the body ran with its cache (make build made both)`);
    t.match(usage.stderr, `${tool}: unknown flag --no-such-flag`, `${tool}: the usage error is reported`);
    // What start.ts compiles as it is: the build id's line, then CommonJS's wrapper around the bundle.
    const text = readFileSync(body, 'utf8');
    t.match(
      text,
      /^\/\/ conveyor-bundle [0-9a-f]{16} built-from: [^\n]*\n\(function \(exports, require, module, __filename, __dirname\) \{/,
      `${tool}: the body opens the wrapper`,
    );
    t.ok(text.endsWith('\n})'), `${tool}: and closes it`);
  }
});

t.test('real runs go through the head to the body', async (t) => {
  const root = tempStore('conveyor-start-');
  t.teardown(() => removeStore(root));
  for (const [tool, args] of [
    ['img-ls', ['--json']],
    ['ctr-ls', ['--json', '-a']],
    ['vol-ls', ['--json']],
    ['img-df', ['--json']],
  ] as const) {
    const run = runBin(toolPath(tool), ['--root', root, ...args]);
    t.equal(run.code, 0, `${tool} ${args.join(' ')} on an empty store exits 0 (${run.stderr})`);
    t.match(run.stderr, `start: bundle ${join(REPO_ROOT, 'tools', tool, 'bundle', 'cli.cjs')} (cache accepted)`, `${tool}: the body ran`);
    if (tool === 'img-df')
      t.ok(
        run.stdout
          .trim()
          .split('\n')
          .every((line) => JSON.parse(line).type === 'df'),
        'img-df: its records',
      );
    else t.equal(run.stdout, '', `${tool}: nothing listed`);
  }
  // --help after an unknown flag is a usage error, as runCli decides.
  t.equal(runBin(toolPath('img-ls'), ['--no-such-flag', '--help']).code, 2, '--no-such-flag --help: a usage error, not the help');
  // Flags that take values reach the body whole: an image that is not there is an error of the run, not of the head.
  const inspect = runBin(toolPath('img-inspect'), ['--root', root, '--log-format', 'json', 'no-such-image']);
  t.equal(inspect.code, 1, 'img-inspect of an unknown image exits 1');
  t.match(inspect.stderr, /"code":"ERR_IMAGE_NOT_FOUND"/, 'its error, logged as JSON: --log-format reached the body');
});

t.test("the build's training runs (scripts/build/training.mjs) run whole on the built tools, and leave nothing behind", async (t) => {
  // Each is what bundle.mjs runs to make a tool's cache from its real path (a failure there falls back to --help quietly).
  const { trainingPlan, TRAINING_REF } = await import(pathToFileURL(join(REPO_ROOT, 'scripts', 'build', 'training.mjs')).href);
  const plan: { dir: string; runs: { tool: string; args: string[]; stdin?: string; stdout?: string; train: boolean }[] } = await trainingPlan();
  t.teardown(() => removeStore(join(plan.dir, 'store')));
  t.same(
    plan.runs.filter((run) => run.train).map((run) => run.tool),
    ['img-import', 'img-ls', 'img-fetch', 'img-inspect', 'img-history', 'img-tag', 'img-df', 'layer-unpack', 'ctr-spawn'],
    'the warm pipeline and its neighbours are trained',
  );
  const outputs: Record<string, string> = {};
  for (const run of plan.runs) {
    const input = run.stdin ? readFileSync(join(plan.dir, run.stdin)) : '';
    const result = spawnSync(process.execPath, [toolPath(run.tool), ...run.args], { input, encoding: 'utf8', timeout: 60_000 });
    t.equal(result.status, 0, `${run.tool} ${run.args.join(' ')} exits 0 (${result.stderr})`);
    if (run.stdout) {
      writeFileSync(join(plan.dir, run.stdout), result.stdout);
      outputs[run.stdout] = result.stdout;
    }
  }
  const records = (name: string) =>
    (outputs[name] ?? '')
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line));
  t.match(records('ls.ndjson'), [{ type: 'image', ref: TRAINING_REF }], 'img-ls lists the imported image');
  t.match(
    records('fetch.ndjson').find((record) => record.type === 'image'),
    { ref: TRAINING_REF },
    'img-fetch --pull=missing finds it present (no registry)',
  );
  t.match(records('inspect.ndjson'), [{ type: 'inspect', ref: TRAINING_REF }], 'img-inspect shows it');
  t.ok(records('history.ndjson').length > 0, 'img-history shows its history');
  t.ok(records('df.ndjson').length > 0, 'img-df counts the store');
  t.match(records('rootfs.ndjson'), [{ type: 'rootfs', ref: TRAINING_REF }], 'layer-unpack makes its rootfs record');
  // ctr-spawn ran its whole path with `true` as the runtime: no container is left, nothing is mounted.
  const containers = join(plan.dir, 'store', 'containers');
  t.same(existsSync(containers) ? readdirSync(containers) : [], [], 'no container left in the store');
  t.notMatch(readFileSync('/proc/self/mountinfo', 'utf8'), plan.dir, 'nothing mounted under the training directory');
});

t.test('a cache V8 does not take still runs the tool', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-start-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = copyImgLs(dir);
  const cacheFile = join(dir, 'img-ls', 'bundle', 'cli.cache');
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
    const run = runBin(bin, ['--no-such-flag']);
    t.equal(run.code, 2, `${what}: exits 2`);
    t.equal(run.stderr.split('\n').slice(1).join('\n'), USAGE_MESSAGE, `${what}: the tool ran`);
    t.match(
      run.stderr,
      what.startsWith('the real') ? '(cache accepted)' : '(cache rejected)',
      `${what}: ${what.startsWith('the real') ? 'accepted' : 'rejected'}`,
    );
  }
  rmSync(cacheFile);
  const run = runBin(bin, ['--no-such-flag']);
  t.equal(
    run.stderr,
    `start: bundle ${join(dir, 'img-ls', 'bundle', 'cli.cjs')} (cache absent)\n${USAGE_MESSAGE}`,
    'no cache: compiled from the source, and the tool runs',
  );

  // V8 takes a cache only under the flags it was made with (the bins run with none).
  const flagged = runBin(toolPath('img-ls'), ['--no-such-flag'], ['--stack-size=900']);
  t.equal(flagged.code, 2, 'another V8 flag: the tool runs');
  t.match(flagged.stderr, '(cache rejected)', 'another V8 flag: the cache is rejected');
});

t.test('a head older than the last tsc build, a missing body or one of another build: dist/cli.js runs; a parser of another build is not used', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-start-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = copyImgLs(dir);
  const tool = join(dir, 'img-ls');
  const dist = join(tool, 'dist', 'cli.js');

  // The head names the build records it came from relative to the tool (tsconfig.tsbuildinfo first).
  const record = join(tool, 'tsconfig.tsbuildinfo');
  writeFileSync(record, '{}');
  const past = new Date(Date.now() - 60_000);
  utimesSync(record, past, past);
  t.equal(runBin(bin, ['--version']).stderr, `start: head ${join(tool, 'bundle', 'head.cjs')}\n`, 'a bundle newer than the build runs');
  const future = new Date(Date.now() + 60_000);
  utimesSync(record, future, future);
  for (const args of [['--version'], ['--no-such-flag']]) {
    const stale = runBin(bin, args);
    t.equal(
      stale.stderr.split('\n')[0],
      `start: dist ${dist} (bundle older than the build: ${record} is newer than the bundle; make build remakes it)`,
      `${args}: a tsc build after the bundle: dist/cli.js runs, not stale code, and the debug line says why`,
    );
    t.equal(stale.code, args[0] === '--version' ? 0 : 2, `${args}: and answers as the tool does`);
  }
  // Said only when asked (CONVEYOR_START_DEBUG): a stale bundle is a checkout's, and stderr stays the tool's.
  const quiet = spawnSync(process.execPath, ['--', bin, '--version'], { env: { ...process.env, CONVEYOR_START_DEBUG: '' }, encoding: 'utf8', timeout: 60_000 });
  t.equal(quiet.stderr, '', 'without CONVEYOR_START_DEBUG a stale bundle says nothing');
  t.equal(quiet.stdout, 'img-ls 0.1.0\n', 'and the tool answers');
  // A failure of the store is reported with its own code from dist/cli.js too (not ERR_INTERNAL: errors.ts's brand).
  const corrupt = join(dir, 'corrupt-store');
  mkdirSync(corrupt, { mode: 0o700 });
  writeFileSync(join(corrupt, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(join(corrupt, 'index.json'), '{not json');
  const failed = runBin(bin, ['--root', corrupt, '--json']);
  t.equal(failed.code, 1, 'a corrupt store: exit 1 from dist/cli.js');
  t.match(JSON.parse(failed.stdout), { type: 'error', code: 'ERR_STORE_CORRUPT' }, 'its error record says ERR_STORE_CORRUPT');
  rmSync(record);

  // A body of another build (a build in progress wrote the head first): never run with this head.
  const body = join(tool, 'bundle', 'cli.cjs');
  const text = readFileSync(body, 'utf8');
  writeFileSync(body, text.replace(/^\/\/ conveyor-bundle [0-9a-f]{16} /, '// conveyor-bundle 0123456789abcdef '));
  const foreign = runBin(bin, ['--no-such-flag']);
  t.equal(foreign.code, 2, 'a body of another build: exit 2 still');
  t.equal(foreign.stderr, `start: dist ${dist} (head and body of different builds)\n${USAGE_MESSAGE}`, 'from dist/cli.js, with the same message');
  t.equal(runBin(bin, ['--version']).stdout, 'img-ls 0.1.0\n', 'the head still answers --version alone');

  writeFileSync(body, text);

  // The head's parser of another build is not used: the head does not answer, the body (of the head's build) does.
  const parser = join(tool, 'bundle', 'parse.cjs');
  writeFileSync(parser, readFileSync(parser, 'utf8').replace(/"[0-9a-f]{16}"/, '"0123456789abcdef"'));
  const own = runBin(bin, ['--help']);
  t.equal(own.stderr, `start: head ${join(tool, 'bundle', 'head.cjs')}\n`, '--help alone: the head answers without its parser');
  const parsed = runBin(bin, ['--json', '--help']);
  t.equal(parsed.code, 0, 'a parser of another build: --json --help exits 0');
  t.equal(parsed.stdout, own.stdout, 'with the same help');
  t.equal(parsed.stderr, `start: bundle ${body} (cache accepted)\n`, 'printed by the body');

  rmSync(body);
  const missing = runBin(bin, ['--no-such-flag']);
  t.equal(missing.stderr, `start: dist ${dist} (no body)\n${USAGE_MESSAGE}`, 'no body: dist/cli.js, the same message');

  // No head at all (a tsc-only build): the bin runs dist/cli.js.
  rmSync(join(tool, 'bundle'), { recursive: true });
  const noBundle = runBin(bin, ['--version']);
  t.equal(noBundle.stdout, 'img-ls 0.1.0\n', 'no bundle: the tool ran from dist/');
  t.equal(noBundle.stderr, `start: dist ${join(tool, 'bin')}/../dist/cli.js (no bundle)\n`, 'and says so');
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

t.test(
  'every bundled file is ASCII (scripts/build/ascii.mjs asciiOnly: V8 keeps it a one-byte string), and an escaped character means what it did',
  async (t) => {
    for (const tool of TOOLS) {
      const root = join(REPO_ROOT, 'tools', tool, 'bundle');
      for (const file of readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((f) => /\.c?js$/.test(f))) {
        const bytes = readFileSync(join(root, file));
        const at = bytes.findIndex((b) => b > 0x7f);
        t.equal(
          at,
          -1,
          `${tool}/bundle/${file} is ASCII${at < 0 ? '' : `: byte ${at} is not (${JSON.stringify(bytes.subarray(Math.max(0, at - 30), at + 10).toString())})`}`,
        );
      }
    }
    // asciiOnly (scripts/build/ascii.mjs) on a table of sources: each evaluates to what it did before.
    const sources = [
      "'aµb'",
      "'a\\µb'", // an identity escape: the backslash goes, or it would escape the new one
      "'a\\\\µb'", // an escaped backslash, then the character
      "/µs/.test('5µs')",
      "/\\µ/.test('µ')",
      '`µ${1}`',
      "'😀'.length", // beyond U+FFFF: a surrogate pair
      "/^[😀]$/u.test('😀')",
      '/* → */ 1',
    ];
    const check = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { asciiOnly } from ${JSON.stringify(pathToFileURL(join(REPO_ROOT, 'scripts', 'build', 'ascii.mjs')).href)};
       const sources = JSON.parse(process.argv[1]);
       console.log(JSON.stringify(sources.map((s) => { const out = asciiOnly(s); return [out, /^[\\x00-\\x7f]*$/.test(out), JSON.stringify(eval(s)) === JSON.stringify(eval(out))]; })));`,
        JSON.stringify(sources),
      ],
      { encoding: 'utf8' },
    );
    t.equal(check.status, 0, check.stderr);
    (JSON.parse(check.stdout) as [string, boolean, boolean][]).forEach(([out, ascii, same], i) => {
      t.ok(ascii, `${sources[i]} -> ${out} is ASCII`);
      t.ok(same, `${sources[i]} -> ${out} means the same`);
    });
    // ctr-logs' duration units include µs, in a regular expression that esbuild leaves as written and asciiOnly escapes.
    const store = tempStore();
    t.teardown(() => removeStore(store));
    const good = spawnSync(process.execPath, [toolPath('ctr-logs'), '--root', store, '--since', '5µs', 'nosuch'], { encoding: 'utf8' });
    t.match(good.stderr, /no such container: nosuch/, '--since 5µs is a duration');
    t.equal(good.status, 1);
    const bad = spawnSync(process.execPath, [toolPath('ctr-logs'), '--root', store, '--since', '5xs', 'nosuch'], { encoding: 'utf8' });
    t.match(bad.stderr, /--since: not a time or duration/, 'and 5xs is not');
    t.equal(bad.status, 2);
  },
);

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
      // The head's parser (args.ts with minimist) needs nothing at all.
      t.ok(specifiers.length > 0 || file === 'parse.cjs', `${tool}/bundle/${file}: its imports are seen`);
      // A head requires its parser beside it (bundle/parse.cjs), when it must parse.
      const foreign = specifiers.filter((specifier) => !isBuiltin(specifier) && !(file === 'head.cjs' && specifier === './parse.cjs'));
      t.same(foreign, [], `${tool}/bundle/${file} imports only builtins`);
    }
  }
});

/** Preloaded into a run (a -r module is no V8 flag: the cache is still taken): the builtins it loaded, on stderr at exit. */
const MODULE_LIST = `process.on('exit', () => require('node:fs').writeSync(2, JSON.stringify(process.moduleLoadList) + '\\n'));\n`;

t.test('a body loads the builtins it binds lazily (bundle.mjs LAZY_BUILTINS) when it uses them, not when it loads a module importing them', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-start-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const preload = join(dir, 'module-list.cjs');
  writeFileSync(preload, MODULE_LIST);
  // ctr-spawn's flag checks evaluate its option, volume and store modules, which import these at their top.
  const run = spawnSync(process.execPath, ['-r', preload, toolPath('ctr-spawn'), '--check-flags', '--net', 'none', '--', '/bin/true'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.equal(run.status, 0, `ctr-spawn --check-flags exits 0 (${run.stderr})`);
  const loaded: string[] = JSON.parse(run.stderr);
  t.same(
    loaded.filter((name) => /^NativeModule (fs\/promises|timers\/promises|dgram|net|child_process|tty|stream)$/.test(name)),
    [],
    'none of fs/promises, timers/promises, dgram, net, child_process (nor tty, nor stream) is loaded',
  );
  // A seccomp profile is read with fs/promises' readFile: the stand-in loads it then, and gives the real function.
  const profile = join(dir, 'seccomp.json');
  writeFileSync(profile, '{"defaultAction":"SCMP_ACT_ALLOW"}');
  const check = (file: string) =>
    spawnSync(process.execPath, ['-r', preload, toolPath('ctr-spawn'), '--check-flags', '--security-opt', `seccomp=${file}`, '--net', 'none'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
  const used = check(profile);
  t.equal(used.status, 0, `a seccomp profile: exits 0 (${used.stderr})`);
  t.ok(JSON.parse(used.stderr).includes('NativeModule fs/promises'), 'a seccomp profile: fs/promises loaded to read it');
  const missing = check(join(dir, 'no-such-file.json'));
  t.equal(missing.status, 125, 'a missing profile: exit 125, as before');
  t.match(missing.stderr, `ctr-spawn: --security-opt seccomp=${join(dir, 'no-such-file.json')}: ENOENT`, "with fs/promises' own error");
});

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
      if (flag === '--help') {
        // The head's words are the tool's: runCli's own answer from dist/cli.js (no bundle involved).
        const own = spawnSync(process.execPath, [join(REPO_ROOT, 'tools', tool, 'dist', 'cli.js'), flag], { encoding: 'utf8', timeout: 60_000 });
        t.equal(run.stdout, own.stdout, `${tool} ${flag}: the head prints what runCli prints`);
      }
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

// runCli writes records with writeSync when stdout is a pipe or a file (lib-common fd-output.ts): all of them arrive, in
// order, and a reader that leaves early (`| head -c 1`) ends the run quietly with 0, as the stream's EPIPE did.
t.test('a run writing records to a file, to a pipe, and to a reader that leaves early', async (t) => {
  const dir = t.testdir();
  const root = join(dir, 'store');
  // img-inspect passes records it does not act on through: 20,000 lines, more than a pipe holds.
  const lines = Array.from({ length: 20_000 }, (_, n) => `{"type":"note","v":1,"n":${n}}`);
  writeFileSync(join(dir, 'in.ndjson'), `${lines.join('\n')}\n`);
  const bash = (script: string) =>
    spawnSync('bash', ['-c', script], {
      encoding: 'utf8',
      timeout: 60_000,
      maxBuffer: 64 << 20,
      env: { ...process.env, TOOL: toolPath('img-inspect'), ROOT: root, DIR: dir },
    });
  const toFile = bash('"$TOOL" --root "$ROOT" < "$DIR/in.ndjson" > "$DIR/out.ndjson"');
  t.equal(toFile.status, 0, toFile.stderr);
  t.equal(readFileSync(join(dir, 'out.ndjson'), 'utf8'), `${lines.join('\n')}\n`, 'a file gets every record, in order');
  const toPipe = bash('"$TOOL" --root "$ROOT" < "$DIR/in.ndjson" | cat');
  t.equal(toPipe.status, 0, toPipe.stderr);
  t.equal(toPipe.stdout, `${lines.join('\n')}\n`, 'a pipe gets every record, in order');
  const early = bash('"$TOOL" --root "$ROOT" < "$DIR/in.ndjson" 2> "$DIR/err" | head -c 1; echo " $PIPESTATUS"');
  t.equal(early.stdout, '{ 0\n', 'the reader got its byte; the tool exited 0');
  t.equal(readFileSync(join(dir, 'err'), 'utf8'), '', 'nothing on stderr');
  // A failure's exit code stands when its error record meets a closed stdout.
  const usage = bash('"$TOOL" --no-such-flag 2> "$DIR/err" | (exec <&-; sleep 0.3); echo "$PIPESTATUS"');
  t.equal(usage.stdout, '2\n', 'a usage error still exits 2');
  t.match(readFileSync(join(dir, 'err'), 'utf8'), 'img-inspect: unknown flag --no-such-flag');
});
