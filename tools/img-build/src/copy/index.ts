/**
 * COPY and ADD into a stage's rootfs (the mounted overlay's merged dir, which
 * holds the image's own, hostile, symlinks), by Docker's rules (moby
 * builder/dockerfile/copy.go, buildkit dockerfile2llb + fileop):
 *  - sources are patterns in `from.root` (sources.ts): a directory copies its
 *    contents, a file itself, a symlink below a directory stays a symlink,
 *    hardlinks below a directory stay hardlinks;
 *  - several sources (or a wildcard matching several) need a destination
 *    ending in `/` or an existing directory (ERR_BUILD_DEST); a file lands
 *    at dest/<name> when dest is a directory, else at dest;
 *  - dest is resolved inside the rootfs with its symlinks followed within it
 *    (an image link `/app -> /etc` lands in rootfs/etc); missing directories
 *    are made 0755, owned by --chown's owner or root (as Docker's classic
 *    builder and buildah), existing ones keep owner and mode; entries are
 *    replaced, never written through (write.ts);
 *  - owner: --chown, else 0:0 for the context and the source's own for
 *    `--from` (`from.keepOwners`); mode: --chmod, else the source's; mtimes
 *    kept; file capabilities and user.* xattrs kept (layer/xattrs.ts);
 *  - heredocs (`COPY <<EOF /dest`) become files, mode 0644 unless --chmod,
 *    mtime 0 (the same Dockerfile gives the same file);
 *  - ADD: a local tar (plain, gzip, bzip2, xz by content) is extracted
 *    (add-tar.ts); a URL is fetched (add-url.ts), mode 0600, never extracted.
 * sourcesDigest (digest.ts) hashes what copyInto would take, for the build cache.
 */
import { randomBytes } from 'node:crypto';
import { constants, createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { posix } from 'node:path';
import type { Heredoc } from '../dockerfile/steps.js';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { writeXattrs } from '../layer/xattrs.js';
import { type ArchiveLimits, archiveCompression, extractArchive } from './add-tar.js';
import { type FetchLimits, fetchUrl } from './add-url.js';
import { hardlinks, metadataFor, splitSources } from './digest.js';
import type { HashCache } from './hash-cache.js';
import { resolveScoped } from '@conveyor/lib-common/container/rootfs';
import { type MatchedSource, matchSources, type SourceEntry } from './sources.js';
import {
  applyMetadata,
  ensureDirectory,
  existing,
  type Metadata,
  mkdirsInRoot,
  replaceWithData,
  replaceWithFile,
  replaceWithHardlink,
  replaceWithSymlink,
} from './write.js';

export { sourcesDigest } from './digest.js';
export { resolveOwner } from './owner.js';

export interface CopyOptions {
  /** The mounted stage root to write into (unused by sourcesDigest). */
  rootfs: string;
  /** Absolute in the image, WORKDIR already applied, a trailing '/' kept. */
  dest: string;
  /** Patterns relative to from.root; for ADD also http(s) URLs. */
  sources: string[];
  from: {
    /** The build context, or another stage's or image's rootfs. */
    root: string;
    /** Whether the root is ours; either way no symlink is followed out of it. */
    trusted: boolean;
    /** The .dockerignore matcher (context-relative paths). */
    ignore?: (path: string) => boolean;
    /** The matcher's mayIncludeUnder: lets an excluded directory be skipped unwalked. */
    mayIncludeUnder?: (dir: string) => boolean;
    /** The matcher's sameBelow: lets a directory that is not excluded be walked without asking `ignore` below it. */
    sameBelow?: (dir: string) => boolean;
    /** Keep the sources' owners when no --chown is given (COPY --from); the context's files become 0:0. */
    keepOwners?: boolean;
  };
  /** Inline files (`COPY <<EOF /dest`), bodies already expanded. */
  heredocs?: Heredoc[];
  chown?: { uid: number; gid: number };
  /** --chmod, as a number (octal parsed). */
  chmod?: number;
  /** ADD: extract local tars, fetch URLs. */
  add?: boolean;
  /** ADD --checksum=sha256:… for URL sources. */
  checksum?: string;
  /** sourcesDigest: the context's content-hash cache (hash-cache.ts), consulted by stat before a file is read. */
  hashCache?: HashCache;
  /** Caps for ADD (archives, downloads); defaults in add-tar.ts and add-url.ts. */
  limits?: Partial<ArchiveLimits & FetchLimits>;
}

/** Files copied at once: enough to keep the disk busy, few enough for the fd limit. */
const COPY_CONCURRENCY = 16;
const HEREDOC_MTIME = new Date(0);

/** An xattr write, done after every owner and mode is set (chown drops security.capability). */
interface XattrWrite {
  path: string;
  xattrs: Map<string, string>;
}

/** Runs `work` over `items` with at most `limit` at a time, failing on the first error. */
async function pooled<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]);
  });
  await Promise.all(workers);
}

/** Copies one matched directory's contents into `targetDir` (a real directory inside the rootfs). */
async function copyTree(options: CopyOptions, source: MatchedSource, targetDir: string, xattrs: XattrWrite[]): Promise<void> {
  const directories: { path: string; meta: Metadata }[] = [];
  const files: { path: string; entry: SourceEntry }[] = [];
  const linked = hardlinks(source);
  const links: { path: string; to: string }[] = [];
  const flush = async () => {
    await pooled(files.splice(0), COPY_CONCURRENCY, async ({ path, entry }) => {
      await replaceWithFile(path, entry.hostPath);
      await applyMetadata(path, 'file', metadataFor(options, entry));
      if (entry.xattrs) xattrs.push({ path, xattrs: entry.xattrs });
    });
  };
  for (const entry of source.entries.slice(1)) {
    const target = posix.join(targetDir, entry.below);
    const linkTo = linked.get(entry);
    if (entry.kind === 'directory') {
      // Files already queued may sit below a name this directory replaces: finish them first.
      if ((await existing(target))?.isDirectory() !== true) await flush();
      await ensureDirectory(target);
      directories.push({ path: target, meta: metadataFor(options, entry) });
      if (entry.xattrs) xattrs.push({ path: target, xattrs: entry.xattrs });
    } else if (entry.kind === 'symlink') {
      await replaceWithSymlink(target, entry.target ?? '');
      await applyMetadata(target, 'symlink', metadataFor(options, entry));
    } else if (linkTo !== undefined) {
      links.push({ path: target, to: posix.join(targetDir, linkTo) });
    } else {
      files.push({ path: target, entry });
      if (files.length >= 256) await flush();
    }
  }
  await flush();
  // Both names are ours, just written under targetDir: the link shares the first copy's inode, owner and mode.
  for (const { path, to } of links) await replaceWithHardlink(path, to);
  // Directory times last: writing their children changed them.
  for (const { path, meta } of directories.reverse()) await applyMetadata(path, 'directory', meta);
}

/** The host path a single file named `name` lands at, its parent made. */
async function fileTarget(options: CopyOptions, destIsDir: boolean, destRelative: string, name: string): Promise<string> {
  if (destIsDir) {
    if (!name) throw new ConveyorError('ERR_BUILD_DEST', `cannot name a file in ${options.dest}`, { hint: 'give the destination a file name (no trailing /)' });
    await mkdirsInRoot(options.rootfs, destRelative, options.chown);
    return posix.join(options.rootfs, destRelative, name);
  }
  await mkdirsInRoot(options.rootfs, posix.dirname(`/${destRelative}`).slice(1), options.chown);
  return posix.join(options.rootfs, destRelative);
}

/**
 * Copies the sources into options.rootfs at options.dest. Fails with
 * ERR_BUILD_SOURCE (a pattern matching nothing, a path leaving its root),
 * ERR_BUILD_DEST (several sources into a file, a path through a file),
 * ERR_BUILD_FETCH / ERR_DIGEST_MISMATCH (ADD URLs), ERR_LAYER_* (ADD
 * archives) or ERR_STORE_IO. On failure the rootfs holds part of the copy:
 * the builder discards the step's upper dir.
 */
export async function copyInto(options: CopyOptions): Promise<void> {
  const { patterns, urls } = splitSources(options);
  const { sources } = patterns.length > 0 ? await matchSources(options.from, patterns) : { sources: [] };
  const heredocs = options.heredocs ?? [];
  const count = sources.length + urls.length + heredocs.length;
  const dest = await resolveScoped(options.rootfs, options.dest, { code: 'ERR_BUILD_DEST' });
  const destInfo = await existing(dest.hostPath);
  const destIsDir = options.dest.endsWith('/') || destInfo?.isDirectory() === true;
  if (count > 1 && !destIsDir) {
    throw new ConveyorError(
      'ERR_BUILD_DEST',
      `${count} sources into ${options.dest}: with more than one source the destination must be a directory and end with a /`,
      {
        hint: `write ${options.dest}/`,
      },
    );
  }

  const xattrWrites: XattrWrite[] = [];
  for (const source of sources) {
    const top = source.entries[0];
    if (source.kind === 'directory') {
      await mkdirsInRoot(options.rootfs, dest.relative, options.chown);
      await copyTree(options, source, dest.hostPath, xattrWrites);
      continue;
    }
    const compression = options.add ? await archiveCompression(top.hostPath) : undefined;
    if (compression !== undefined) {
      await extractArchive({
        file: top.hostPath,
        compression,
        rootfs: options.rootfs,
        destRelative: dest.relative,
        chown: options.chown,
        limits: options.limits,
      });
      continue;
    }
    const target = await fileTarget(options, destIsDir, dest.relative, source.name);
    await replaceWithFile(target, top.hostPath);
    await applyMetadata(target, 'file', metadataFor(options, top));
    if (top.xattrs) xattrWrites.push({ path: target, xattrs: top.xattrs });
  }
  await writeXattrs(xattrWrites);

  for (const url of urls) {
    // Fetched beside its destination under a private name, then renamed over it: a failed or mismatching download leaves nothing at the name.
    const parentRelative = destIsDir ? dest.relative : posix.dirname(`/${dest.relative}`).slice(1);
    await mkdirsInRoot(options.rootfs, parentRelative, options.chown);
    const temp = posix.join(options.rootfs, parentRelative, `.conveyor-add-${randomBytes(6).toString('hex')}`);
    try {
      // Numeric open flags (node accepts them; the types say string): O_EXCL|O_NOFOLLOW, nothing there is followed or reused.
      const flags = (constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW) as unknown as string;
      const sink = createWriteStream(temp, { flags, mode: 0o600 });
      const fetched = await fetchUrl(url, sink, { checksum: options.checksum, limits: options.limits });
      const target = await fileTarget(options, destIsDir, dest.relative, fetched.name);
      const present = await existing(target);
      if (present?.isDirectory()) await rm(target, { recursive: true, force: true });
      await rename(temp, target);
      const mtime = fetched.lastModified ?? new Date();
      await applyMetadata(target, 'file', { uid: options.chown?.uid ?? 0, gid: options.chown?.gid ?? 0, mode: options.chmod ?? 0o600, mtime });
    } finally {
      await rm(temp, { force: true });
    }
  }

  for (const heredoc of heredocs) {
    const target = await fileTarget(options, destIsDir, dest.relative, heredoc.name);
    await replaceWithData(target, heredoc.content);
    await applyMetadata(target, 'file', { uid: options.chown?.uid ?? 0, gid: options.chown?.gid ?? 0, mode: options.chmod ?? 0o644, mtime: HEREDOC_MTIME });
  }
}
