/**
 * Flat mode: all layers applied in order into one directory, whiteouts
 * applied. Built in a staging directory beside the target and renamed into
 * place at the end, so a failure (bad digest, hostile entry) leaves nothing
 * behind. The target must not exist or be an empty directory.
 *
 * The place is the caller's choice (a bundle's rootfs, a build context), so
 * it is not forced closed the way the store is; exposureWarning says when
 * other users can reach setuid or capability-bearing files there.
 */
import { mkdir, readdir, realpath, rename, rm, rmdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { runProcess } from '@conveyor/lib-common/subprocess';
import { Applier } from './apply/applier.js';
import { explainTooLarge, layerLimits, withLimits, type Usage } from './budget.js';
import { applyLayer, type LayerResult, type LayerSource } from './read-layer.js';

export interface FlattenOptions {
  rootless: boolean;
  /** Caps on each layer's file content bytes and tar entries. */
  maxBytes: number;
  maxEntries: number;
  /** Caps on all layers together. */
  maxImageBytes: number;
  maxImageEntries: number;
  warn: (message: string) => void;
  /** Threads creating files, shared by the layers unpacked at once, at least one each (default 2); 0 = inline. */
  writerThreads?: number;
  /** Called as each layer starts and ends. */
  onLayer?: (index: number, phase: 'start' | 'done', result?: LayerResult) => void;
  onProgress?: (index: number, blobBytes: number) => void;
}

export interface FlattenResult {
  dir: string;
  layers: LayerResult[];
  bytes: number;
  entries: number;
  owners: Record<string, [number, number]>;
}

async function checkTarget(dir: string): Promise<boolean> {
  let info;
  try {
    info = await stat(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
  if (!info.isDirectory() || (await readdir(dir)).length > 0) {
    throw new ConveyorError('ERR_USAGE', `--flatten ${dir}: the target exists and is not an empty directory`, {
      hint: 'give a new directory, or remove the old one first',
    });
  }
  return true;
}

export async function flattenLayers(sources: LayerSource[], target: string, opts: FlattenOptions): Promise<FlattenResult> {
  const dir = resolve(target);
  const existed = await checkTarget(dir);
  await mkdir(dirname(dir), { recursive: true });
  const staging = join(dirname(dir), `.${basename(dir)}.unpack-${Math.random().toString(16).slice(2, 10)}`);
  await mkdir(staging, { mode: 0o755 });
  let applier: Applier | undefined;
  // One Applier counts all layers: a layer's own cap starts from what the layers below used.
  let below: Usage = { bytes: 0, entries: 0 };
  const image = { maxBytes: opts.maxImageBytes, maxEntries: opts.maxImageEntries };
  const limits = layerLimits(opts, image, () => below);
  try {
    applier = new Applier(withLimits({ root: staging, mode: 'flat', rootless: opts.rootless, warn: opts.warn, writerThreads: opts.writerThreads }, limits));
    const layers: LayerResult[] = [];
    for (const [i, source] of sources.entries()) {
      opts.onLayer?.(i, 'start');
      const { bytes, entries } = applier.stats();
      below = { bytes, entries };
      applier.beginLayer(i === 0);
      const result = await applyLayer(source, applier!, (n) => opts.onProgress?.(i, n));
      layers.push(result);
      opts.onLayer?.(i, 'done', result);
    }
    await applier.finish();
    await applier.close();
    if (existed) await rmdir(dir);
    await rename(staging, dir);
    const stats = applier.stats();
    return { dir, layers, bytes: stats.bytes, entries: stats.entries, owners: stats.owners };
  } catch (error) {
    await applier?.close();
    await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw explainTooLarge(error, limits, image);
  }
}

/** The first directory from `dir` up to / that other users cannot pass, if any. */
async function closedOnTheWay(dir: string, uid: number): Promise<string | undefined> {
  for (let path = await realpath(dir); ; path = dirname(path)) {
    const info = await stat(path);
    // Closed: no search (x) bit for group or others, and owned by us or root. A 0700
    // directory of another user still lets that user through.
    if ((info.mode & 0o011) === 0 && (info.uid === uid || info.uid === 0)) return path;
    if (path === '/') return undefined;
  }
}

/** Runs a read-only scan; its stdout, or undefined when the program is missing. */
async function scan(command: string, args: string[], cwd: string): Promise<string | undefined> {
  const result = await runProcess(command, args, { cwd, stderr: 'ignore', maxBuffer: 64 * 1024 * 1024 });
  // A non-zero exit (an unreadable entry) still leaves a useful listing.
  return result.code === 'ENOENT' ? undefined : result.stdout;
}

/**
 * A warning when other users can reach `dir` (every directory from / to it
 * lets them search it) and it holds setuid/setgid files or files with
 * capabilities (security.capability): any local user could run them with
 * the privileges they carry (Moby's CVE-2021-41091). Undefined otherwise.
 * The tree is scanned only when it is reachable.
 */
export async function exposureWarning(dir: string, uid: number): Promise<string | undefined> {
  if ((await closedOnTheWay(dir, uid)) !== undefined) return undefined;
  // find and getfattr read names as bytes and never follow symlinks (-P, -h).
  const setid = ((await scan('find', ['-P', '.', '-type', 'f', '-perm', '/6000', '-print0'], dir)) ?? '').split('\0').filter(Boolean);
  const caps = ((await scan('getfattr', ['-R', '-h', '-P', '-m', '^security\\.capability$', '.'], dir)) ?? '')
    .split('\n')
    .filter((l) => l.startsWith('# file: '))
    .map((l) => l.slice('# file: '.length));
  if (setid.length === 0 && caps.length === 0) return undefined;
  const held = [
    ...(setid.length > 0 ? [`${setid.length} setuid/setgid file${setid.length === 1 ? '' : 's'} (${setid[0].replace(/^\.\//, '')}...)`] : []),
    ...(caps.length > 0 ? [`${caps.length} file${caps.length === 1 ? '' : 's'} with capabilities (${caps[0]}...)`] : []),
  ];
  const mode = ((await stat(dir)).mode & 0o7777).toString(8).padStart(4, '0');
  return (
    `--flatten ${dir} holds ${held.join(' and ')} and other users can reach it (it is mode ${mode} and every directory above lets others through): ` +
    `any local user could run them with the privileges they carry (chmod 700 ${dir}, or unpack under a directory only you can enter)`
  );
}
