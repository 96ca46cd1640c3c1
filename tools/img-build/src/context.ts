/**
 * The build context: a directory whose files COPY and ADD take, minus what
 * `.dockerignore` excludes (Docker's pattern rules, helper A's matcher). A
 * `<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's,
 * as BuildKit's. The context is somebody else's: the copy code never follows
 * a symlink out of it (helper B's copyInto).
 */
import { open, readFile, stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { join, resolve } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { readDockerignore } from './dockerignore.js';
import { createIgnoreMatcher } from './patterns.js';
import { MAX_DOCKERFILE_BYTES } from './dockerfile/parse.js';

export interface BuildContext {
  dir: string;
  /** Whether a context-relative path (`/`-separated, no leading `/`) is excluded by .dockerignore. */
  ignore?: (path: string) => boolean;
  /** Whether anything under a context-relative directory may be included (an excluded directory is not walked). */
  mayIncludeUnder?: (dir: string) => boolean;
  /** Whether every path below a context-relative directory is excluded exactly when it is (IgnoreMatcher.sameBelow). */
  sameBelow?: (dir: string) => boolean;
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
    // Its errors name the file (a bad pattern is the ignore file's fault, not the Dockerfile's).
    const matcher = createIgnoreMatcher(patterns, { file });
    return {
      dir: absolute,
      ignore: (path) => matcher.ignores(path),
      mayIncludeUnder: (dir) => matcher.mayIncludeUnder(dir),
      sameBelow: (dir) => matcher.sameBelow(dir),
      ignorePatterns: patterns,
    };
  }
  return { dir: absolute, ignorePatterns: [] };
}

async function readSmall(file: string): Promise<string | undefined> {
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile()) return undefined;
  if (info.size > MAX_IGNORE_BYTES) throw new ConveyorError('ERR_USAGE', `${file} is larger than 1 MiB`);
  return readFile(file, 'utf8');
}

/**
 * The Dockerfile's text and the name errors give it: `-f PATH` (relative to
 * the working directory, as docker build), `-f -` (stdin), else
 * CONTEXT/Dockerfile. Larger than the parser's cap is refused while reading.
 */
export async function readDockerfile(file: string | undefined, contextDir: string, stdin: Readable): Promise<{ text: string; name: string }> {
  const tooLarge = (what: string) =>
    new ConveyorError('ERR_DOCKERFILE_PARSE', `${what}: larger than ${MAX_DOCKERFILE_BYTES} bytes`, { hint: 'a Dockerfile is text; check -f' });
  if (file === '-') {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of stdin) {
      size += (chunk as Buffer).length;
      if (size > MAX_DOCKERFILE_BYTES) throw tooLarge('the Dockerfile on stdin');
      chunks.push(chunk as Buffer);
    }
    return { text: Buffer.concat(chunks).toString('utf8'), name: 'Dockerfile' };
  }
  const path = file !== undefined ? resolve(file) : join(resolve(contextDir), 'Dockerfile');
  try {
    const handle = await open(path, 'r');
    try {
      if ((await handle.stat()).size > MAX_DOCKERFILE_BYTES) throw tooLarge(path);
      return { text: await handle.readFile('utf8'), name: file ?? 'Dockerfile' };
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (error instanceof ConveyorError) throw error;
    throw new ConveyorError('ERR_USAGE', `cannot read the Dockerfile ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, {
      hint: 'give it with -f PATH',
    });
  }
}
