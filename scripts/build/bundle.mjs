#!/usr/bin/env node
// Bundles every tool for a fast start (issue 17), after `tsc -b` (`make build` runs both), in two
// files each:
// - the HEAD, bundle/head.cjs, which the tool's bin requires: lib-common's start.ts and cli-head with
//   the tool's name, help and flag spec (read from the body with CONVEYOR_DUMP_FLAGS=1); it answers
//   --help and --version (with bundle/parse.cjs, args.ts and minimist, when it must parse), and
//   starts the body for every other run;
// - the BODY, bundle/cli.cjs: tools/<name>/dist/cli.js and everything it imports (lib-common,
//   minimist, split2, tar-fs; some Node builtins bound lazily, LAZY_BUILTINS), the whole tool in
//   CommonJS's function wrapper, which start.ts compiles as it is with a V8 code cache
//   (bundle/cli.cache) made here by a warm-up run (scripts/build/code-cache.mjs): the warm
//   pipeline's tools by a training run of their real path on a tiny image in a temporary store
//   (scripts/build/training.mjs), the others by `--help`.
// Both carry this build's id (the body on its first line): start.ts runs a head only with the body of
// its build.
//
// The entries a tool starts as their own process or thread, found as `new URL('./x.js',
// import.meta.url)` in its dist/ (ctr-spawn's supervisor and port relay, layer-unpack's inflate and
// writer workers), become ES module bundles at the same place under bundle/ as under dist/. Every
// `import.meta.url` in a tool's modules is rewritten to the URL the module would have under bundle/
// (its place in dist/, taken to bundle/), so such paths, and img-build's `../../<tool>/bin`, resolve
// from a bundle as they do from dist/ without a change to the modules.
//
// One esbuild service builds all of it (two builds, bodies and ES module entries, at once, then the
// heads); the warm-ups run two at a time. Failure: esbuild's errors (a top-level await other
// than `await runCli(...)` in a cli.ts, an import.meta.url outside a tool), a body that does not print
// its flags and a `--help` warm-up that exits non-zero fail the build with exit 1; a training run
// that fails is said on stderr, and its tool (and one whose input it was to make) warmed up with --help.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { asciiOnly } from './ascii.mjs';
import { trainingPlan } from './training.mjs';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TOOLS = join(REPO, 'tools');
/** The identifier the rewritten import.meta.url refers to: the bundle directory's URL, declared at the top of each output. */
const ROOT = '__conveyorBundleRoot';

const tools = readdirSync(TOOLS).filter((name) => existsSync(join(TOOLS, name, 'dist', 'cli.js')));

/** The entries a tool's modules start by URL (a process or a worker thread), relative to its dist/. */
function startedEntries(tool) {
  const dist = join(TOOLS, tool, 'dist');
  const found = new Set();
  for (const file of readdirSync(dist, { recursive: true, encoding: 'utf8' })) {
    if (!file.endsWith('.js')) continue;
    const text = readFileSync(join(dist, file), 'utf8');
    for (const match of text.matchAll(/new URL\(['"](\.{1,2}\/[^'"]+\.js)['"], import\.meta\.url\)/g)) {
      const target = join(dirname(join(dist, file)), match[1]);
      if (existsSync(target)) found.add(relative(dist, target));
    }
  }
  return [...found];
}

/**
 * The tsc build records (tsconfig.tsbuildinfo, rewritten by each `tsc -b` that emits) of a tool's
 * project and the projects it references, relative to the tool's directory: lib-common/start.ts runs
 * the bundle only while it is newer than all of them.
 */
function buildRecords(tool) {
  const seen = new Set();
  const visit = (project) => {
    if (seen.has(project)) return;
    seen.add(project);
    const config = JSON.parse(readFileSync(join(project, 'tsconfig.json'), 'utf8'));
    for (const reference of config.references ?? []) visit(resolve(project, reference.path));
  };
  visit(join(TOOLS, tool));
  return [...seen].map((project) => relative(join(TOOLS, tool), join(project, 'tsconfig.tsbuildinfo')));
}

/** A tool's dist/ module as esbuild loads it: import.meta.url pointing under bundle/, the cli's top-level await dropped. */
const rewrite = {
  name: 'conveyor-bundle-paths',
  setup(b) {
    b.onLoad({ filter: /\.js$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      const inTool = relative(TOOLS, args.path).split(sep);
      const isToolModule = inTool.length > 2 && inTool[1] === 'dist' && !inTool[0].startsWith('..');
      const place = isToolModule ? `./${inTool.slice(2).join('/')}` : undefined;
      const isMain = b.initialOptions.format === 'cjs' && place === './cli.js';
      if (!text.includes('import.meta.url') && !isMain) return undefined;
      if (!place) return { errors: [{ text: `${relative(REPO, args.path)}: import.meta.url outside a tool's dist/ has no place under bundle/` }] };
      let contents = text.replaceAll('import.meta.url', `new URL(${JSON.stringify(place)}, ${ROOT}).href`);
      // CommonJS has no top-level await: the cli's last statement needs none (runCli handles its own errors).
      if (isMain) contents = contents.replace(/^await runCli\(/m, 'runCli(');
      return { contents, loader: 'js' };
    });
  },
};

/**
 * Node builtins a body binds lazily: loaded on the first use of one of their exports, not when a module that
 * imports them is initialised. Node compiles a builtin and all it requires on its first load (fs/promises brings
 * readline, fs/dir and the watchers, 1.5 ms; net brings stream, 5 ms), and many runs use them late or not at all
 * (a foreground ctr-spawn: fs/promises in its clean-up only, timers/promises never; ctr-spawn --check-flags:
 * neither net nor child_process). A stand-in module takes the builtin's place, and loads it when a name is read
 * of it: the same function or object, read when the code uses it (a class extended at a module's top level loads
 * its builtin there, as before).
 */
const LAZY_BUILTINS = ['node:fs/promises', 'node:timers/promises', 'node:os', 'node:net', 'node:child_process', 'node:dgram'];
const lazyBuiltins = {
  name: 'conveyor-lazy-builtins',
  setup(b) {
    const filter = new RegExp(`^(${LAZY_BUILTINS.join('|')})$`);
    // Static imports only: a dynamic import is lazy already, and the stand-in's own require must reach Node.
    b.onResolve({ filter }, (args) => (args.kind === 'import-statement' ? { path: args.path, namespace: 'conveyor-lazy' } : undefined));
    b.onLoad({ filter: /.*/, namespace: 'conveyor-lazy' }, (args) => {
      // What an importer reads of it is looked up on the exports' prototype, a proxy that loads the builtin and reads
      // the name there: an importer's namespace (esbuild's __toESM) is made with the exports' prototype and copies
      // their own properties, of which there are none, so nothing is copied per export and importer, nor made per
      // export. __esModule is the one name esbuild's helpers read of it before any use (the builtin has none).
      const contents = `let loaded;
module.exports = Object.create(new Proxy({}, { get: (_, name) => (name === '__esModule' ? undefined : (loaded ??= require(${JSON.stringify(args.path)}))[name]) }));
`;
      return { contents, loader: 'js' };
    });
  },
};

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  outdir: TOOLS,
  outbase: TOOLS,
  write: false,
  logLevel: 'warning',
  plugins: [rewrite],
  // What tests and stack traces name stays readable; the bundle is read, not downloaded.
  minify: false,
  legalComments: 'none',
};

const started = tools.flatMap((tool) => startedEntries(tool).map((entry) => join(TOOLS, tool, 'dist', entry)));
const [mains, entries] = await Promise.all([
  build({
    ...common,
    format: 'cjs',
    entryPoints: tools.map((tool) => join(TOOLS, tool, 'dist', 'cli.js')),
    outExtension: { '.js': '.cjs' },
    // A vm.Script has no module loader: `await import('node:zlib')` becomes a require (still lazy).
    supported: { 'dynamic-import': false },
    plugins: [rewrite, lazyBuiltins],
  }),
  started.length ? build({ ...common, format: 'esm', entryPoints: started }) : { outputFiles: [] },
]);

/** This build's id, on the bundles' first line and at the head of their caches (lib-common/start.ts). */
const buildId = randomBytes(8).toString('hex');
/** Writes a file whole (a temp file renamed over it): tools may be starting from these bundles as they are rebuilt. */
function writeWhole(file, contents) {
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, contents);
  renameSync(temp, file);
}

/**
 * A body is a function expression, CommonJS's wrapper written around the bundle: start.ts compiles the file's
 * text as it is, which V8 would otherwise copy whole (316 KB for ctr-spawn) into a wrapped string on every start.
 */
const BODY_OPEN = '(function (exports, require, module, __filename, __dirname) {';
const BODY_CLOSE = '\n})';
/** Runs a body in a plain Node (`node -e RUN_BODY BODY`), as start.ts does without a cache: for its CONVEYOR_DUMP_FLAGS output. */
const RUN_BODY =
  "const file = process.argv[1]; require('node:vm').runInThisContext(require('node:fs').readFileSync(file, 'utf8'), { filename: file })(exports, require, module, file, require('node:path').dirname(file));";

const written = new Set();
for (const [result, format] of [
  [mains, 'cjs'],
  [entries, 'esm'],
]) {
  for (const output of result.outputFiles) {
    // tools/<tool>/dist/<place> -> tools/<tool>/bundle/<place>
    const [tool, , ...place] = relative(TOOLS, output.path).split(sep);
    const target = join(TOOLS, tool, 'bundle', ...place);
    const up = '../'.repeat(place.length - 1) || './';
    const head =
      format === 'cjs'
        ? `// conveyor-bundle ${buildId} built-from: ${buildRecords(tool).join(' ')}\n${BODY_OPEN}const ${ROOT} = require('node:url').pathToFileURL(__dirname + '/').href;\n`
        : `import { createRequire as __conveyorCreateRequire } from 'node:module';\nconst require = __conveyorCreateRequire(import.meta.url);\nconst ${ROOT} = new URL(${JSON.stringify(up)}, import.meta.url).href;\n`;
    mkdirSync(dirname(target), { recursive: true });
    writeWhole(target, head + asciiOnly(output.text) + (format === 'cjs' ? BODY_CLOSE : ''));
    written.add(target);
  }
}
/** A tool's name, help and flag spec, as its body's runCli prints them (CONVEYOR_DUMP_FLAGS=1). */
async function headOf(tool) {
  const env = { ...process.env, CONVEYOR_DUMP_FLAGS: '1' };
  delete env.NODE_EXTRA_CA_CERTS;
  const { stdout } = await promisify(execFile)(process.execPath, ['-e', RUN_BODY, join(TOOLS, tool, 'bundle', 'cli.cjs')], { env, maxBuffer: 1 << 24 });
  const { name, help, spec } = JSON.parse(stdout);
  return { name, help, spec };
}

/**
 * The head's source: lib-common's start.ts (checks and starts the rest) and cli-head (answers --help
 * and --version) with the tool's definition and this build's id. The bin calls `start`. The parser
 * (args.ts with minimist, bundle/parse.cjs) is required only when the head must parse (cli-head):
 * one of another build is not used (the head does not answer; the body, checked, does).
 */
const headSource = (tool, head) => `import { startTool } from ${JSON.stringify(join(REPO, 'lib-common', 'dist', 'start.js'))};
import { answerEarly } from ${JSON.stringify(join(REPO, 'lib-common', 'dist', 'cli-head.js'))};
const HEAD = ${JSON.stringify(head)};
const BUILD_ID = ${JSON.stringify(buildId)};
const stream = () => process.stdout.on('error', (error) => error.code === 'EPIPE' && process.exit(process.exitCode ?? 0));
function parse(argv, spec) {
  const parser = require('./parse.cjs');
  if (parser.buildId !== BUILD_ID) throw new Error('bundle/parse.cjs is of another build');
  return parser.parseArgs(argv, spec);
}
export function start(toolUrl, options) {
  const head = { buildId: BUILD_ID, builtFrom: ${JSON.stringify(buildRecords(tool))}, answered: () => answerEarly(HEAD, process.argv.slice(2), process.env, parse, stream) };
  return startTool(toolUrl, head, options);
}
`;

/** How a head and the heads' parser are built: one CommonJS file each, read from memory. */
const SMALL_FILE = { bundle: true, platform: 'node', target: 'node20', format: 'cjs', write: false, logLevel: 'warning', legalComments: 'none' };

/** The heads' parser: args.ts (with minimist), tagged with this build's id. */
const parser = await build({
  ...SMALL_FILE,
  stdin: {
    contents: `export { parseArgs } from ${JSON.stringify(join(REPO, 'lib-common', 'dist', 'args.js'))};\nexport const buildId = ${JSON.stringify(buildId)};\n`,
    resolveDir: REPO,
    sourcefile: 'parse.js',
    loader: 'js',
  },
});

const heads = await Promise.all(
  tools.map(async (tool) =>
    build({
      ...SMALL_FILE,
      stdin: { contents: headSource(tool, await headOf(tool)), resolveDir: REPO, sourcefile: `${tool}-head.js`, loader: 'js' },
      external: ['./parse.cjs'],
    }),
  ),
);
tools.forEach((tool, i) => {
  const target = join(TOOLS, tool, 'bundle', 'head.cjs');
  writeWhole(target, `// conveyor-bundle ${buildId} built-from: ${buildRecords(tool).join(' ')}\n${heads[i].outputFiles[0].text}`);
  written.add(target);
  const parse = join(TOOLS, tool, 'bundle', 'parse.cjs');
  writeWhole(parse, parser.outputFiles[0].text);
  written.add(parse);
});
// What an earlier build left and this one did not write (the cache is rewritten by the warm-up; until then its build id tells it is old).
for (const tool of tools) {
  const dir = join(TOOLS, tool, 'bundle');
  for (const file of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const path = join(dir, file);
    if ((/\.c?js$/.test(file) && !written.has(path)) || (file.endsWith('.cache') && file !== 'cli.cache')) rmSync(path, { force: true });
  }
}

/** Runs `command` with stdin and stdout from/to files in `dir` (or none); resolves to whether it exited 0. */
function runWith(command, args, { dir, stdin, stdout }) {
  return new Promise((resolvePromise, reject) => {
    const input = stdin ? openSync(join(dir, stdin), 'r') : 'ignore';
    const output = stdout ? openSync(join(dir, stdout), 'w') : 'ignore';
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    delete env.CONVEYOR_TRACE;
    const child = spawn(command, args, { stdio: [input, output, 'inherit'], env });
    for (const fd of [input, output]) if (typeof fd === 'number') closeSync(fd);
    child.on('error', reject);
    child.on('exit', (code) => resolvePromise(code === 0));
  });
}

/** Runs the warm-up that writes a tool's code cache (a `--help` run unless `run` is a training run); resolves to whether it succeeded. */
function warmUp(tool, run) {
  const codeCache = join(REPO, 'scripts', 'build', 'code-cache.mjs');
  return runWith(process.execPath, [codeCache, join(TOOLS, tool), ...(run?.args ?? [])], { dir: run?.dir, stdin: run?.stdin, stdout: run?.stdout });
}

/** Tools warmed up with --help: those the training (scripts/build/training.mjs) does not run, and those whose training failed. */
const plan = await trainingPlan();
const trained = new Set(plan.runs.filter((run) => run.train).map((run) => run.tool));
const queue = tools.filter((tool) => !trained.has(tool));
const failures = [];

/** The training runs, in order; a tool whose run fails, or whose input a failed run was to make, is warmed up with --help. */
async function train() {
  const made = new Set();
  try {
    for (const run of plan.runs) {
      const ready = tools.includes(run.tool) && (!run.stdin || made.has(run.stdin));
      const ok =
        ready &&
        (run.train
          ? await warmUp(run.tool, { ...run, dir: plan.dir })
          : await runWith(process.execPath, [join(TOOLS, run.tool, 'bin', `${run.tool}.js`), ...run.args], { ...run, dir: plan.dir }));
      if (ok && run.stdout) made.add(run.stdout);
      if (ok || !run.train || !tools.includes(run.tool)) continue;
      process.stderr.write(
        `bundle: the code cache training of ${run.tool} ${ready ? 'failed' : 'had no input'} (${run.args.join(' ')}): warmed up with --help\n`,
      );
      queue.push(run.tool);
    }
  } finally {
    try {
      plan.close();
    } catch (error) {
      process.stderr.write(`bundle: could not remove the training directory ${plan.dir}: ${error.message}\n`);
    }
  }
}

/** Warms up the queued tools one at a time. */
async function drain() {
  for (let tool = queue.shift(); tool; tool = queue.shift()) if (!(await warmUp(tool))) failures.push(tool);
}

// Two at a time: the training (then the queue) beside the queue.
await Promise.all([train().then(drain), drain()]);
if (failures.length) {
  process.stderr.write(`bundle: the code cache warm-up of ${failures.join(', ')} failed\n`);
  process.exit(1);
}
