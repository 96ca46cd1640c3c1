/**
 * A crash harness for the store's writers (issue 16): start a tool, kill it
 * with SIGKILL at a chosen moment, then let the test run it again and check
 * the store.
 *
 *   const rng = seededRandom(seed);
 *   const full = await timeRun('layer-unpack', args, { input });      // the writer's duration
 *   const crash = await crashRun('layer-unpack', args, { input, killAfterMs: rng() * full.ms });
 *   ... run it again to completion ...
 *   t.strictSame(await storeProblems(root), []);
 *
 * Kill points are a delay drawn from a seeded PRNG across the writer's
 * measured duration (so a failure names a seed that reproduces it, modulo the
 * scheduler), and/or the moment the writer's stderr, stdout, or something the
 * test watches (a registry's access log) shows a phase (`killWhen`), or a
 * file it creates appears (`killOnCreate`).
 *
 * storeProblems is the harness's own minimal store check, for a checkout
 * where img-fsck is not built (the tests use img-fsck when it is): every blob
 * hashes to its name, every index entry's manifest (an index's child
 * manifests), config and layers are present, and every layer directory under
 * its chain ID holds `diff/` and a meta.json naming that chain ID. It reads
 * the store only. strayFiles lists what no tool would ever collect.
 *
 * Also here: startThrottleProxy, a loopback HTTP proxy that forwards to a
 * registry at a limited rate in both directions, so a pull or a push of a
 * small image takes long enough for kills to land in the middle of a blob.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, readFileSync, statSync, watch } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { jsonLines, toolPath } from './tools.js';

/** A PRNG (mulberry32) in [0, 1): the same seed gives the same kill points. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** How many crash runs per writer: CONVEYOR_CRASH_RUNS, else `fallback`. */
export function crashRuns(fallback: number): number {
  const n = Number(process.env.CONVEYOR_CRASH_RUNS);
  return Number.isSafeInteger(n) && n > 0 ? n : fallback;
}

/** The first seed: CONVEYOR_CRASH_SEED (to replay a failure), else one fixed per run of the suite. */
export function crashSeed(): number {
  const n = Number(process.env.CONVEYOR_CRASH_SEED);
  return Number.isSafeInteger(n) ? n : Date.now() % 1_000_000;
}

export interface CrashOptions {
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** SIGKILL after this many milliseconds. */
  killAfterMs?: number;
  /** SIGKILL as soon as this returns true; asked on each output and every 10 ms. */
  killWhen?: (output: { stdout: string; stderr: string }) => boolean;
  /**
   * SIGKILL the moment a file whose name matches `match` is created in `dir` (inotify, through
   * fs.watch): a phase too short to poll for, such as the temp file of an atomic write.
   */
  killOnCreate?: { dir: string; match: RegExp /** The n-th such file (default 1). */; nth?: number };
  /** Give up (SIGKILL, and report `timedOut`) after this long; default 60 s. */
  timeoutMs?: number;
}

export interface CrashResult {
  /** The harness killed it (false: it finished first). */
  killed: boolean;
  timedOut: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  records: Record<string, any>[];
  /** From spawn to exit. */
  ms: number;
}

/** Runs tool `name`, kills it with SIGKILL at the chosen point, resolves once it is gone. */
export function crashRun(name: string, args: string[], options: CrashOptions = {}): Promise<CrashResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child: ChildProcess = spawn(process.execPath, ['--', toolPath(name), ...args], {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let killed = false;
    let timedOut = false;
    const kill = () => {
      if (killed || child.exitCode !== null || child.signalCode !== null) return;
      killed = true;
      child.kill('SIGKILL');
    };
    const check = () => {
      if (options.killWhen?.({ stdout, stderr })) kill();
    };
    const timers: NodeJS.Timeout[] = [];
    const created = new Set<string>();
    const watcher = options.killOnCreate
      ? watch(options.killOnCreate.dir, (_event, name) => {
          if (!name || !options.killOnCreate?.match.test(String(name))) return;
          created.add(String(name));
          if (created.size >= (options.killOnCreate.nth ?? 1)) kill();
        })
      : undefined;
    if (options.killAfterMs !== undefined) timers.push(setTimeout(kill, Math.max(0, options.killAfterMs)));
    if (options.killWhen) timers.push(setInterval(check, 10));
    timers.push(
      setTimeout(() => {
        timedOut = true;
        kill();
      }, options.timeoutMs ?? 60_000),
    );
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      check();
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      check();
    });
    child.stdin?.on('error', () => {});
    child.on('error', (error) => {
      watcher?.close();
      for (const timer of timers) clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      watcher?.close();
      for (const timer of timers) clearTimeout(timer);
      resolve({ killed: killed && signal === 'SIGKILL', timedOut, code, signal, stdout, stderr, records: jsonLines(stdout), ms: Date.now() - started });
    });
    child.stdin?.end(options.input ?? '');
  });
}

/** Runs tool `name` to completion (no kill): its result and duration, to scale the kill points. */
export function timeRun(name: string, args: string[], options: Omit<CrashOptions, 'killAfterMs' | 'killWhen'> = {}): Promise<CrashResult> {
  return crashRun(name, args, options);
}

function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

const HEX = /^[0-9a-f]{64}$/;
const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);

/**
 * What is wrong with the store at `root`, one line per problem (empty: clean). Read-only.
 * Leftovers a later run sweeps (ingest/, layers/.tmp-*, *.tmp files) are not problems.
 */
export async function storeProblems(root: string): Promise<string[]> {
  const problems: string[] = [];
  const blobs = join(root, 'blobs', 'sha256');
  const present = new Set<string>();
  for (const name of existsSync(blobs) ? readdirSync(blobs) : []) {
    if (!HEX.test(name)) continue; // a writer's temp file: swept later, never read as a blob
    present.add(name);
    const actual = await sha256File(join(blobs, name));
    if (actual !== name) problems.push(`blobs/sha256/${name} holds sha256:${actual}`);
  }
  const json = (hex: string): any => {
    try {
      return JSON.parse(readFileSync(join(blobs, hex), 'utf8'));
    } catch {
      return undefined;
    }
  };
  const need = (digest: unknown, what: string): boolean => {
    const hex = typeof digest === 'string' && digest.startsWith('sha256:') ? digest.slice(7) : '';
    if (HEX.test(hex) && present.has(hex)) return true;
    problems.push(`${what} ${String(digest)} is missing`);
    return false;
  };
  const checkManifest = (digest: string, what: string, depth = 0) => {
    if (!need(digest, what)) return;
    const manifest = json(digest.slice(7));
    if (!manifest) return problems.push(`${what} ${digest} is not JSON`);
    if (INDEX_TYPES.has(manifest.mediaType) || Array.isArray(manifest.manifests)) {
      // A multi-platform index pulled for one platform holds only that child: the others may be absent.
      const held = (manifest.manifests ?? []).filter((m: any) => present.has(String(m?.digest).slice(7)));
      if (held.length === 0) problems.push(`${what} ${digest}: none of its manifests is present`);
      if (depth < 2) for (const m of held) checkManifest(m.digest, `${what} > manifest`, depth + 1);
      return;
    }
    need(manifest.config?.digest, `${what} ${digest} config`);
    for (const layer of manifest.layers ?? []) need(layer?.digest, `${what} ${digest} layer`);
  };
  let index: any;
  try {
    index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8'));
  } catch (error) {
    if (existsSync(join(root, 'index.json'))) problems.push(`index.json: ${(error as Error).message}`);
  }
  for (const entry of index?.manifests ?? []) {
    checkManifest(entry?.digest, `index.json ${entry?.annotations?.['org.opencontainers.image.ref.name'] ?? '?'}`);
  }
  const layers = join(root, 'layers');
  for (const name of existsSync(layers) ? readdirSync(layers) : []) {
    if (!HEX.test(name)) continue; // staging (.tmp-*) and moved-aside dirs: swept later, never used
    const dir = join(layers, name);
    if (!statSync(dir).isDirectory()) {
      problems.push(`layers/${name} is not a directory`);
      continue;
    }
    let meta: any;
    try {
      meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
    } catch (error) {
      problems.push(`layers/${name}/meta.json: ${(error as Error).message}`);
      continue;
    }
    if (meta.chainID !== `sha256:${name}`) problems.push(`layers/${name}/meta.json names chain ${meta.chainID}`);
    if (!existsSync(join(dir, 'diff')) || !statSync(join(dir, 'diff')).isDirectory()) problems.push(`layers/${name} has no diff/`);
  }
  return problems;
}

/**
 * Files a writer left that nothing will ever collect: temp files (`*.tmp`), staging and
 * moved-aside dirs (`.tmp-*`, `.gc-*`), ingest/ entries. Paths under the store, sorted.
 * Call it after img-prune: what is left then stays forever.
 */
export function strayFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string, depth: number) => {
    for (const name of readdirSync(join(root, rel))) {
      const path = rel ? `${rel}/${name}` : name;
      if (/\.tmp$|^\.tmp-|^\.gc-/.test(name) || rel === 'ingest') out.push(path);
      // The store's own bookkeeping, not the trees of layers and containers.
      else if (depth < 2 && !['layers', 'containers', 'l'].includes(path) && statSync(join(root, path)).isDirectory()) walk(path, depth + 1);
    }
  };
  walk('', 0);
  if (existsSync(join(root, 'layers'))) for (const name of readdirSync(join(root, 'layers'))) if (name.startsWith('.')) out.push(`layers/${name}`);
  return out.sort();
}

/**
 * A loopback HTTP proxy in front of `target` (http://HOST:PORT) that passes
 * every request and response at about `bytesPerSecond` each way (in 16 KiB
 * slices), so transfers of a small image last long enough to be killed in the
 * middle. `requests` lists "METHOD URL" in arrival order.
 */
export async function startThrottleProxy(target: string, bytesPerSecond: number): Promise<{ host: string; requests: string[]; stop(): Promise<void> }> {
  const targetUrl = new URL(target);
  const requests: string[] = [];
  const slice = 16 * 1024;
  const throttle = () =>
    new Transform({
      transform(chunk: Buffer, _encoding, done: TransformCallback) {
        const parts: Buffer[] = [];
        for (let i = 0; i < chunk.length; i += slice) parts.push(chunk.subarray(i, i + slice));
        const next = () => {
          const part = parts.shift();
          if (!part) return done();
          this.push(part);
          setTimeout(next, (part.length / bytesPerSecond) * 1000);
        };
        next();
      },
    });
  const server: Server = createServer((req: IncomingMessage, res) => {
    requests.push(`${req.method} ${req.url}`);
    const upstream = httpRequest(
      // The Host header is kept: the registry builds its upload Location URLs from it, so
      // the PATCH and PUT of an upload come through the proxy too.
      { host: targetUrl.hostname, port: targetUrl.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(throttle()).pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(throttle()).pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    host,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
