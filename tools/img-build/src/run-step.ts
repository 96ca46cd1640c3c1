/**
 * RUN: the command runs in a real container on the step's overlay, by
 * spawning `ctr-spawn` with a `mount` record for it (the overlay stays
 * mounted after it exits, so its upper dir can be packed). The stage's
 * environment, user and working directory go in as ctr-spawn's `-u`/`-w` and
 * the record's Env; the command after `--`. stdout and stderr are handed to
 * `onOutput` as they arrive.
 *
 * Mount points the runtime makes in a root that lacks them (/proc, /sys,
 * /dev, /etc/hosts, /etc/hostname, /etc/resolv.conf) are removed from the
 * upper dir afterwards when they are still empty stubs, so they do not end
 * up in the layer (buildah does the same). Paths are walked without
 * following symlinks: the upper dir is the container's to fill.
 *
 * Cancellation: when `signal` aborts, ctr-spawn gets SIGTERM, and two more a
 * second apart (its third stop kills the container); ctr-spawn removes its
 * runtime state, the caller unmounts.
 */
import { chmod, lstat, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { ContainerPaths } from '@conveyor/lib-common/overlay/mount';
import { RECORD_VERSION } from '@conveyor/lib-common/records';
import type { Store } from '@conveyor/lib-common/store';
import type { Heredoc } from './dockerfile/steps.js';
import type { ToolRunner } from './tools.js';

export interface RunOptions {
  store: Store;
  runner: ToolRunner;
  paths: ContainerPaths;
  argv: string[];
  env: string[];
  user?: string;
  workdir?: string;
  network?: 'default' | 'none' | 'host';
  /** A heredoc run as a script file (`RUN <<EOF` with a `#!` line): bind-mounted read-only at /dev/pipes/NAME. */
  scriptFile?: Heredoc;
  /** ctr-spawn flags: --root, --log-format. */
  spawnArgs: string[];
  onOutput: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
  signal?: AbortSignal;
}

export interface RunResult {
  exitCode: number;
  /** ctr-spawn's last stderr line when it failed itself (125-127). */
  message?: string;
  /** The run was cancelled through `signal`. */
  cancelled: boolean;
}

const STUBS = ['/etc/hostname', '/etc/hosts', '/etc/resolv.conf', '/proc', '/sys', '/dev', '/etc'];

export async function runInContainer(options: RunOptions): Promise<RunResult> {
  const { paths, store } = options;
  const existed = new Set<string>();
  for (const stub of STUBS) if (await lstatInside(paths.merged, stub)) existed.add(stub);
  const args = [...options.spawnArgs];
  // `--flag=value`: a USER or WORKDIR from the Dockerfile that starts with `-` stays a value (`USER --privileged`).
  if (options.user) args.push(`--user=${options.user}`);
  if (options.workdir) args.push(`--workdir=${options.workdir}`);
  if (options.network === 'host') args.push('--net', 'host');
  else if (options.network === 'none') args.push('--net', 'none');
  if (options.scriptFile) {
    // The script's directory is bound read-only at /dev/pipes, where BuildKit puts heredoc scripts too.
    const dir = join(paths.containerDir, 'heredoc');
    const file = join(dir, heredocFileName(options.scriptFile.name));
    await mkdir(dir, { mode: 0o755 });
    await writeFile(file, options.scriptFile.content, { mode: 0o755 });
    await chmod(file, 0o755);
    args.push('--mount', `type=bind,src=${dir},dst=/dev/pipes,readonly`);
  }
  args.push('--', ...options.argv);
  const record = {
    type: 'mount',
    v: RECORD_VERSION,
    ref: 'img-build',
    id: paths.id,
    containerDir: paths.containerDir,
    target: paths.merged,
    upper: paths.upper,
    work: paths.work,
    store: store.root,
    config: { Env: options.env },
  };
  const child = options.runner.start('ctr-spawn', args, { input: JSON.stringify(record) + '\n', stdout: 'pipe', stderr: 'pipe', buffer: false });
  let lastStderr = '';
  child.stdout?.on('data', (chunk: Buffer) => options.onOutput('stdout', chunk));
  child.stderr?.on('data', (chunk: Buffer) => {
    lastStderr = (lastStderr + chunk.toString('utf8')).slice(-2000);
    options.onOutput('stderr', chunk);
  });
  let cancelled = false;
  const timers: NodeJS.Timeout[] = [];
  const onAbort = () => {
    cancelled = true;
    child.kill('SIGTERM');
    timers.push(
      setTimeout(() => child.kill('SIGTERM'), 1000),
      setTimeout(() => child.kill('SIGTERM'), 2000),
    );
  };
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });
  const result = await child.result;
  options.signal?.removeEventListener('abort', onAbort);
  for (const timer of timers) clearTimeout(timer);
  if (result.code !== undefined) {
    throw new ConveyorError('ERR_SPAWN_FAILED', `cannot run ctr-spawn: ${result.originalMessage ?? result.shortMessage}`, {
      hint: 'build the tools: make build',
    });
  }
  await removeStubs(paths.upper, existed);
  const exitCode = result.exitCode ?? 128 + (result.signal === 'SIGKILL' ? 9 : 15);
  const message = reason(lastStderr.trim().split('\n').pop());
  return { exitCode, cancelled, ...(exitCode >= 125 && exitCode <= 127 && message ? { message } : {}) };
}

/** ctr-spawn's last message line, as text (with --log-format=json it is a JSON log object). */
function reason(line: string | undefined): string | undefined {
  if (!line?.startsWith('{')) return line;
  try {
    const parsed = JSON.parse(line) as { message?: unknown };
    return typeof parsed.message === 'string' ? parsed.message : line;
  } catch {
    return line;
  }
}

/** The file name a heredoc script gets under /dev/pipes (its delimiter word, made safe). */
export function heredocFileName(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^\.+/, '_') || '_';
}

/** lstat of `path` under `root`, or undefined when it (or a symlink on the way) is not there as a real path. */
async function lstatInside(root: string, path: string) {
  const parts = path.split('/').filter((p) => p !== '');
  let current = root;
  for (let i = 0; i < parts.length; i++) {
    current = join(current, parts[i]);
    const info = await lstat(current).catch(() => undefined);
    if (!info) return undefined;
    if (i < parts.length - 1 && !info.isDirectory()) return undefined;
    if (i === parts.length - 1) return info;
  }
  return undefined;
}

async function removeStubs(upper: string, existed: Set<string>): Promise<void> {
  for (const stub of STUBS) {
    if (existed.has(stub)) continue;
    const info = await lstatInside(upper, stub);
    if (!info) continue;
    const empty = info.isFile() ? info.size === 0 : info.isDirectory() ? (await readdir(join(upper, stub))).length === 0 : false;
    if (empty) await rm(join(upper, stub), { recursive: true, force: true });
  }
}
