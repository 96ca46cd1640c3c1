/**
 * The build context: a directory whose files COPY and ADD take, minus what
 * `.dockerignore` excludes (Docker's pattern rules, helper A's matcher). A
 * `<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's,
 * as BuildKit's. The context is somebody else's: the copy code never follows
 * a symlink out of it (helper B's copyInto).
 */
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { readDockerignore } from './dockerignore.js';
import { createIgnoreMatcher } from './patterns.js';

export interface BuildContext {
  dir: string;
  /** Whether a context-relative path (`/`-separated, no leading `/`) is excluded by .dockerignore. */
  ignore?: (path: string) => boolean;
  /** Whether anything under a context-relative directory may be included (an excluded directory is not walked). */
  mayIncludeUnder?: (dir: string) => boolean;
  /** The ignore file's patterns, for the cache key: a changed .dockerignore may change what COPY takes. */
  ignorePatterns: string[];
}

const MAX_IGNORE_BYTES = 1024 * 1024;

export async function openContext(dir: string, dockerfilePath: string | undefined): Promise<BuildContext> {
  const absolute = resolve(dir);
  const info = await stat(absolute).catch(() => undefined);
  if (!info?.isDirectory()) {
    throw new ConveyorError('ERR_USAGE', `build context ${dir} is not a directory`, { hint: 'give the directory holding the files COPY takes' });
  }
  const candidates = [...(dockerfilePath && dockerfilePath !== '-' ? [`${resolve(dockerfilePath)}.dockerignore`] : []), join(absolute, '.dockerignore')];
  for (const file of candidates) {
    const text = await readSmall(file);
    if (text === undefined) continue;
    const patterns = readDockerignore(text);
    const matcher = createIgnoreMatcher(patterns);
    return { dir: absolute, ignore: (path) => matcher.ignores(path), mayIncludeUnder: (dir) => matcher.mayIncludeUnder(dir), ignorePatterns: patterns };
  }
  return { dir: absolute, ignorePatterns: [] };
}

async function readSmall(file: string): Promise<string | undefined> {
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile()) return undefined;
  if (info.size > MAX_IGNORE_BYTES) throw new ConveyorError('ERR_USAGE', `${file} is larger than 1 MiB`);
  return readFile(file, 'utf8');
}
