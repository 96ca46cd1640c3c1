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
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Script } from 'node:vm';

export interface StartOptions {
  /** CONVEYOR_START_DEBUG=1: say on stderr which entry ran and what became of the cache. */
  env: NodeJS.ProcessEnv;
  stderr: NodeJS.WritableStream;
  /**
   * Build time only (scripts/build/code-cache.mjs): compile without the old
   * cache and hand over the script, whose createCachedData() the warm-up
   * calls when the run is over.
   */
  warmUp?: (script: Script) => void;
}

/** What startTool ran: the bundle (and whether V8 took its cache) or dist/cli.js (and why). */
export type StartPath =
  | { entry: 'bundle'; file: string; cache: 'accepted' | 'rejected' | 'absent' }
  | { entry: 'dist'; file: string; reason: 'no bundle' | 'bundle older than the build' };

/** The CommonJS wrapper the bundle runs in; the build's warm-up compiles the same text, or V8 rejects its cache. */
const WRAPPER_HEAD = '(function (exports, require, module, __filename, __dirname) {';
const WRAPPER_TAIL = '\n})';

/** The bundle's first line names the tsc build records (*.tsbuildinfo, relative to the tool) it was made from. */
const BUILT_FROM = '// conveyor-bundle built-from: ';

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
export function staleness(toolDir: string, bundle: string, source: string): 'bundle older than the build' | undefined {
  const built = modifiedMs(bundle) ?? 0;
  const line = source.slice(0, source.indexOf('\n'));
  const records = line.startsWith(BUILT_FROM) ? line.slice(BUILT_FROM.length).split(' ') : [];
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
  const stale = source === undefined ? 'no bundle' : options.warmUp ? undefined : staleness(toolDir, bundle, source);
  const debug = options.env.CONVEYOR_START_DEBUG === '1';
  if (source === undefined || stale) {
    const path: StartPath = { entry: 'dist', file: join(toolDir, 'dist', 'cli.js'), reason: stale ?? 'no bundle' };
    if (debug) options.stderr.write(`start: ${path.entry} ${path.file} (${path.reason})\n`);
    await import(pathToFileURL(path.file).href);
    return path;
  }
  const cacheFile = join(toolDir, 'bundle', 'cli.cache');
  const cachedData = options.warmUp ? undefined : readOrUndefined(cacheFile);
  const script = new Script(WRAPPER_HEAD + source + WRAPPER_TAIL, { filename: bundle, cachedData });
  const cache = cachedData === undefined ? 'absent' : script.cachedDataRejected ? 'rejected' : 'accepted';
  const path: StartPath = { entry: 'bundle', file: bundle, cache };
  if (debug) options.stderr.write(`start: ${path.entry} ${path.file} (cache ${cache})\n`);
  options.warmUp?.(script);
  const module = { exports: {} };
  script.runInThisContext()(module.exports, createRequire(bundle), module, bundle, dirname(bundle));
  return path;
}
