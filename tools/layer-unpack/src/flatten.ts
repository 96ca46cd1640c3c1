/**
 * Flat mode: all layers applied in order into one directory, whiteouts
 * applied. Built in a staging directory beside the target and renamed into
 * place at the end, so a failure (bad digest, hostile entry) leaves nothing
 * behind. The target must not exist or be an empty directory.
 */
import { mkdir, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { Applier } from './applier.js';
import { applyLayer, type LayerResult, type LayerSource } from './layer.js';

export interface FlattenOptions {
  rootless: boolean;
  maxBytes: number;
  maxEntries: number;
  warn: (message: string) => void;
  /** Threads creating files per layer (default 2); 0 = inline. */
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
  try {
    applier = new Applier({ root: staging, mode: 'flat', rootless: opts.rootless, maxBytes: opts.maxBytes, maxEntries: opts.maxEntries, warn: opts.warn, writerThreads: opts.writerThreads });
    const layers: LayerResult[] = [];
    for (const [i, source] of sources.entries()) {
      opts.onLayer?.(i, 'start');
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
    throw error;
  }
}
