/**
 * How a tool starts (issue 17). Its bundle (scripts/build/bundle.mjs, after
 * tsc) is two files:
 * - the HEAD, bundle/head.cjs, which the bin requires: this module, lib-common's
 *   cli-head and the tool's name, help and flag spec. startTool runs in it, on
 *   every start: it checks that the bundle is current and lets the head answer
 *   --help and --version (cli-head), which ends the run;
 * - else (a run, a usage error) the BODY, bundle/cli.cjs: the whole tool in
 *   CommonJS's function wrapper, compiled with V8's code cache (bundle/cli.cache,
 *   made at build time by a warm-up), whose runCli parses the arguments again.
 * So --help compiles a few kilobytes, and a run pays the head's fraction of a
 * millisecond more.
 *
 * Failure never stops the tool: a cache V8 rejects (corrupt, another Node,
 * other V8 flags) or one of another build means a plain compile; a head older
 * than the last `tsc -b` (a *.tsbuildinfo newer than it: src changed since
 * `make build`), or a body missing or of another build than its head (a build
 * in progress) means the tool's dist/cli.js: a head and a body of different
 * builds never run together (the bin runs dist/cli.js when there is no head).
 * Nothing is written here at run time: only the build's warm-up (`warmUp`)
 * makes a cache.
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Script } from 'node:vm';

/** What a tool's head knows of itself (scripts/build/bundle.mjs writes it into the head). */
export interface Head {
  /** This build's id (16 hex digits): its body's first line and the first bytes of the body's cache carry the same. */
  buildId: string;
  /** The tsc build records (*.tsbuildinfo, relative to the tool) the bundle was made from. */
  builtFrom: string[];
  /** Answers --help and --version (lib-common/cli-head): true when it did, and the run is over. */
  answered: () => boolean;
}

export interface StartOptions {
  /** CONVEYOR_START_DEBUG=1: say on stderr which entry ran and what became of the cache. */
  env: NodeJS.ProcessEnv;
  /** Read only to say so (the bins pass a getter: process.stderr is a stream, made on first use, and costs a start-up that never logs). */
  stderr: NodeJS.WritableStream;
  /**
   * The body's `require`: the bin's own (a bundle requires nothing but node: builtins, which any
   * require resolves; the bins' is at hand, where node:module's createRequire would load Node's
   * module loader too). Without it (an ES module caller), createRequire.
   */
  require?: NodeJS.Require;
  /**
   * Build time only (scripts/build/code-cache.mjs): the body runs whatever the head would answer,
   * compiled without the old cache; `compiling` is called before it compiles and `compiled` after,
   * with what makes its cache file's contents, which the warm-up calls when the run is over.
   */
  warmUp?: {
    compiling(): void;
    compiled(cacheFile: () => Buffer): void;
  };
}

/** What startTool ran: the head alone (it answered), the body (and whether V8 took its cache), or dist/cli.js (and why). */
export type StartPath =
  | { entry: 'head'; file: string }
  | { entry: 'bundle'; file: string; cache: 'accepted' | 'rejected' | 'absent' }
  | { entry: 'dist'; file: string; reason: 'bundle older than the build' | 'no body' | 'head and body of different builds'; newer?: string };

/**
 * The body's first line: `// conveyor-bundle BUILD_ID built-from: RECORD...`. Its build id is also
 * the first bytes of its cache file: V8 checks a cache's V8 version, flags and source length, not
 * the source, so a cache of an earlier build must not be taken; and a head runs only the body of
 * its own build.
 */
const FIRST_LINE = /^\/\/ conveyor-bundle ([0-9a-f]{16}) built-from: (.*)$/;
const BUILD_ID_BYTES = 16;

function modifiedMs(file: string): number | undefined {
  try {
    // A missing file (every build record outside a checkout) without an exception made and thrown for it.
    return statSync(file, { throwIfNoEntry: false })?.mtimeMs;
  } catch {
    return undefined;
  }
}

/**
 * Whether the bundle file `bundle`, made from the tsc build records `builtFrom`, is not current: the
 * first record a tsc build wrote after it (its path), which says why. Undefined when it is current
 * (outside a checkout there are no build records: current).
 */
export function staleness(toolDir: string, bundle: string, builtFrom: string[]): string | undefined {
  const built = modifiedMs(bundle) ?? 0;
  for (const record of builtFrom) {
    const compiled = modifiedMs(join(toolDir, record));
    if (compiled !== undefined && compiled > built) return join(toolDir, record);
  }
  return undefined;
}

function openOrUndefined(file: string): number | undefined {
  try {
    return openSync(file, 'r');
  } catch {
    return undefined;
  }
}

/** The first `size` bytes of the file open at `fd` (fewer at its end), read into `buffer`: a view of them. */
function readInto(fd: number, buffer: Buffer, size: number): Buffer {
  let length = 0;
  for (let read = -1; length < size && read !== 0; length += read) read = readSync(fd, buffer, length, size - length, length);
  return buffer.subarray(0, length);
}

/**
 * The body's text and the bytes of its cache (`cacheFile`, unless undefined), each undefined when it cannot be
 * read. One buffer of the larger file's size holds both in turn, the body's text taken from it before the cache is
 * read over it: memory first touched costs page faults, and a buffer each cost ctr-spawn's start 1.7 ms more
 * (a fresh process's read of its 316 KB body and 318 KB cache, median of 25).
 */
function readBody(bodyFile: string, cacheFile: string | undefined): { source: string | undefined; cache: Buffer | undefined } {
  const body = openOrUndefined(bodyFile);
  if (body === undefined) return { source: undefined, cache: undefined };
  const cache = cacheFile === undefined ? undefined : openOrUndefined(cacheFile);
  try {
    const bodySize = fstatSync(body).size;
    let cacheSize: number | undefined;
    try {
      cacheSize = cache === undefined ? undefined : fstatSync(cache).size;
    } catch {}
    const buffer = Buffer.allocUnsafeSlow(Math.max(bodySize, cacheSize ?? 0));
    const source = readInto(body, buffer, bodySize).toString('utf8');
    try {
      return { source, cache: cache === undefined || cacheSize === undefined ? undefined : readInto(cache, buffer, cacheSize) };
    } catch {
      return { source, cache: undefined };
    }
  } catch {
    return { source: undefined, cache: undefined };
  } finally {
    closeSync(body);
    if (cache !== undefined) closeSync(cache);
  }
}

/**
 * Runs dist/cli.js, the tsc build: always current. Why the bundle was not used is said under
 * CONVEYOR_START_DEBUG only, not as a warning on every run: only a checkout has build records, a
 * stale bundle there is a developer's `tsc -b` after `make build` (the tool still answers right,
 * tens of milliseconds slower), and a line on stderr from every tool of every pipeline would break
 * what reads stderr (tests compare it) more than it helps; bench/run.sh refuses stale bundles itself.
 */
async function runDist(toolDir: string, reason: Extract<StartPath, { entry: 'dist' }>['reason'], options: StartOptions, newer?: string): Promise<StartPath> {
  const path: StartPath = { entry: 'dist', file: join(toolDir, 'dist', 'cli.js'), reason, ...(newer === undefined ? {} : { newer }) };
  if (options.env.CONVEYOR_START_DEBUG === '1') {
    // The build record that is newer names what to do: `make build` remakes the bundle from it.
    const why = newer === undefined ? path.reason : `${path.reason}: ${newer} is newer than the bundle; make build remakes it`;
    options.stderr.write(`start: ${path.entry} ${path.file} (${why})\n`);
  }
  await import(pathToFileURL(path.file).href);
  return path;
}

/** Runs the tool whose package directory is `toolUrl` (the bin passes `new URL('..', import.meta.url)`) from its bundle, whose head is `head`. */
export async function startTool(toolUrl: URL, head: Head, options: StartOptions): Promise<StartPath> {
  const toolDir = fileURLToPath(toolUrl);
  const debug = options.env.CONVEYOR_START_DEBUG === '1';
  const headFile = join(toolDir, 'bundle', 'head.cjs');
  const newer = options.warmUp ? undefined : staleness(toolDir, headFile, head.builtFrom);
  if (newer !== undefined) return runDist(toolDir, 'bundle older than the build', options, newer);
  // The build's warm-up runs the body whatever the head would answer (it warms the body up with --help).
  if (!options.warmUp && head.answered()) {
    if (debug) options.stderr.write(`start: head ${headFile}\n`);
    return { entry: 'head', file: headFile };
  }
  const bodyFile = join(toolDir, 'bundle', 'cli.cjs');
  // The build's warm-up compiles without the old cache, and writes the new one.
  const { source, cache: file } = readBody(bodyFile, options.warmUp ? undefined : join(toolDir, 'bundle', 'cli.cache'));
  if (source === undefined) return runDist(toolDir, 'no body', options);
  if (FIRST_LINE.exec(source.slice(0, source.indexOf('\n')))?.[1] !== head.buildId) return runDist(toolDir, 'head and body of different builds', options);
  options.warmUp?.compiling();
  const ours = file !== undefined && file.subarray(0, BUILD_ID_BYTES).toString('latin1') === head.buildId;
  // The body is CommonJS's wrapper around the tool, `(function (exports, require, module, __filename, __dirname) {...})`
  // as the build writes it: compiled as it was read (a wrapper added here would be a copy of the whole text).
  const script = new Script(source, { filename: bodyFile, cachedData: ours ? file.subarray(BUILD_ID_BYTES) : undefined });
  const cache = file === undefined ? 'absent' : !ours || script.cachedDataRejected ? 'rejected' : 'accepted';
  if (debug) options.stderr.write(`start: bundle ${bodyFile} (cache ${cache})\n`);
  options.warmUp?.compiled(() => Buffer.concat([Buffer.from(head.buildId, 'latin1'), script.createCachedData()]));
  const module = { exports: {} };
  const require = options.require ?? (await import('node:module')).createRequire(bodyFile);
  script.runInThisContext()(module.exports, require, module, bodyFile, dirname(bodyFile));
  return { entry: 'bundle', file: bodyFile, cache };
}
