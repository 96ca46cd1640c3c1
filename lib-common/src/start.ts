/**
 * How a tool starts (issue 17): its bin (tools/<name>/bin/<name>.js) calls
 * startTool, which runs the tool's single-file bundle (bundle/cli.cjs, built
 * by scripts/build/bundle.mjs after tsc) compiled with V8's code cache
 * (bundle/cli.cache, made at build time by a warm-up `--help` run), so a
 * start-up reads two files and compiles next to nothing instead of loading
 * ~60 modules from dist/.
 *
 * Failure never stops the tool: a cache V8 rejects (corrupt, another Node,
 * other V8 flags) means a plain compile; no bundle, or one older than the
 * last `tsc -b` (a *.tsbuildinfo newer than it: src changed since `make
 * build`), means the tool's dist/cli.js as before. Nothing is written here at
 * run time: only the build's warm-up (`warmUp`) makes a cache.
 */
import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Script } from 'node:vm';

export interface StartOptions {
  /** CONVEYOR_START_DEBUG=1: say on stderr which entry ran and what became of the cache. */
  env: NodeJS.ProcessEnv;
  /** Read only to say so (the bins pass a getter: process.stderr is a stream, made on first use, and costs a start-up that never logs). */
  stderr: NodeJS.WritableStream;
  /**
   * The bundle's `require`: the bin's own (a bundle requires nothing but node: builtins, which any
   * require resolves; the bins' is at hand, where node:module's createRequire would load Node's
   * module loader too). Without it (an ES module caller), createRequire.
   */
  require?: NodeJS.Require;
  /**
   * Build time only (scripts/build/code-cache.mjs): compile without the old
   * cache and hand over what makes the cache file's contents, which the
   * warm-up calls when the run is over.
   */
  warmUp?: (cacheFile: () => Buffer) => void;
}

/** What startTool ran: the bundle (and whether V8 took its cache) or dist/cli.js (and why). */
export type StartPath =
  | { entry: 'bundle'; file: string; cache: 'accepted' | 'rejected' | 'absent' }
  | { entry: 'dist'; file: string; reason: 'no bundle' | 'bundle older than the build' };

/** The CommonJS wrapper the bundle runs in; the build's warm-up compiles the same text, or V8 rejects its cache. */
const WRAPPER_HEAD = '(function (exports, require, module, __filename, __dirname) {';
const WRAPPER_TAIL = '\n})';

/**
 * The bundle's first line: `// conveyor-bundle BUILD_ID built-from: RECORD...`, its build's id (16
 * hex digits, also the first bytes of its cache file: V8 checks a cache's V8 version, flags and
 * source length, not the source, so a cache of an earlier build must not be taken) and the tsc build
 * records (*.tsbuildinfo, relative to the tool) it was made from.
 */
const FIRST_LINE = /^\/\/ conveyor-bundle ([0-9a-f]{16}) built-from: (.*)$/;
const BUILD_ID_BYTES = 16;

function modifiedMs(file: string): number | undefined {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

/**
 * Why the bundle (its text `source`) is not current: a tsc build came after it. Undefined when it
 * is (outside a checkout there are no build records: current).
 */
export function staleness(toolDir: string, bundle: string, firstLine: RegExpExecArray | null): 'bundle older than the build' | undefined {
  const built = modifiedMs(bundle) ?? 0;
  const records = firstLine ? firstLine[2].split(' ') : [];
  for (const record of records) {
    const compiled = modifiedMs(join(toolDir, record));
    if (compiled !== undefined && compiled > built) return 'bundle older than the build';
  }
  return undefined;
}

function readOrUndefined(file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
}

/** Runs the tool whose package directory is `toolUrl` (the bin passes `new URL('..', import.meta.url)`). */
export async function startTool(toolUrl: URL, options: StartOptions): Promise<StartPath> {
  const toolDir = fileURLToPath(toolUrl);
  const bundle = join(toolDir, 'bundle', 'cli.cjs');
  const source = readOrUndefined(bundle)?.toString('utf8');
  const firstLine = source === undefined ? null : FIRST_LINE.exec(source.slice(0, source.indexOf('\n')));
  const stale = source === undefined ? 'no bundle' : options.warmUp ? undefined : staleness(toolDir, bundle, firstLine);
  const debug = options.env.CONVEYOR_START_DEBUG === '1';
  if (source === undefined || stale) {
    const path: StartPath = { entry: 'dist', file: join(toolDir, 'dist', 'cli.js'), reason: stale ?? 'no bundle' };
    if (debug) options.stderr.write(`start: ${path.entry} ${path.file} (${path.reason})\n`);
    await import(pathToFileURL(path.file).href);
    return path;
  }
  const cacheFile = join(toolDir, 'bundle', 'cli.cache');
  const buildId = firstLine?.[1] ?? '';
  const file = options.warmUp ? undefined : readOrUndefined(cacheFile);
  const ours = file !== undefined && buildId !== '' && file.subarray(0, BUILD_ID_BYTES).toString('latin1') === buildId;
  const cachedData = ours ? file.subarray(BUILD_ID_BYTES) : undefined;
  const script = new Script(WRAPPER_HEAD + source + WRAPPER_TAIL, { filename: bundle, cachedData });
  const cache = file === undefined ? 'absent' : !ours || script.cachedDataRejected ? 'rejected' : 'accepted';
  const path: StartPath = { entry: 'bundle', file: bundle, cache };
  if (debug) options.stderr.write(`start: ${path.entry} ${path.file} (cache ${cache})\n`);
  options.warmUp?.(() => Buffer.concat([Buffer.from(buildId, 'latin1'), script.createCachedData()]));
  const module = { exports: {} };
  const require = options.require ?? (await import('node:module')).createRequire(bundle);
  script.runInThisContext()(module.exports, require, module, bundle, dirname(bundle));
  return path;
}
