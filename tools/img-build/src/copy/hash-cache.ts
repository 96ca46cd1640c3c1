/**
 * A content-hash cache for the build context, as BuildKit's contenthash
 * keeps: a file whose stat (device, inode, size, mode, mtime, ctime) is
 * unchanged since we hashed it has the same bytes, so an unchanged rebuild
 * reads no file contents to compute COPY's cache key.
 *
 * One file per context directory, `<store>/build-hashes/<sha256 of the
 * context's path>.json`: `{ version, root, entries: { "<rel path>":
 * "<dev>:<ino>:<size>:<mode>:<mtimeMs>:<ctimeMs>:<hex sha256>" } }`.
 *
 * It is only an accelerator: a file that is absent, oversized, corrupt, for
 * another root, or an entry that does not parse is ignored (the file is
 * hashed), and an entry is trusted for nothing but "this stat, these bytes".
 * Changing a file's bytes always changes its ctime, which userspace cannot
 * set; a change within the same clock tick as our hash is the one case the
 * stat cannot show ("racy git"), so a hash is recorded only for a file whose
 * ctime is at least RACY_MARGIN_MS older than the moment the cache was opened.
 *
 * Bounded: at most MAX_ENTRIES per context (the entries used by the latest
 * build first), at most MAX_CONTEXTS files (the least recently written go).
 * Written atomically (Store.writeFileAtomic) in a 0700 directory, and only
 * when a build hashed something new.
 */
import { constants, type Stats } from 'node:fs';
import { open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { mkdirClosed, type Store } from '@conveyor/lib-common/store';

export const HASH_CACHE_DIR = 'build-hashes';
export const MAX_ENTRIES = 100_000;
export const MAX_CONTEXTS = 32;
/** Well above any filesystem's timestamp granularity (ext4/xfs/overlay: a clock tick, FAT: 2 s is not a build context). */
export const RACY_MARGIN_MS = 1000;
const MAX_FILE_BYTES = 32 * 1024 * 1024;
const ENTRY = /^(\d+:\d+:\d+:\d+:[0-9.e+-]+:[0-9.e+-]+):([a-f0-9]{64})$/;

export interface HashCache {
  /** The sha256 hex recorded for this path with exactly this stat, if any. */
  lookup(path: string, stats: Stats): string | undefined;
  /** Records a hash computed now (skipped for a file changed too recently to tell apart by its stat). */
  record(path: string, stats: Stats, hex: string): void;
  /** Writes the cache back when something was recorded; errors are swallowed (an accelerator must not fail a build). */
  save(): Promise<void>;
}

function statKey(stats: Stats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mode}:${stats.mtimeMs}:${stats.ctimeMs}`;
}

function cacheFile(store: Store, root: string): string {
  return join(store.root, HASH_CACHE_DIR, `${createHash('sha256').update(root).digest('hex')}.json`);
}

async function readEntries(file: string, root: string): Promise<Map<string, string>> {
  const entries = new Map<string, string>();
  try {
    // O_NOFOLLOW: a planted symlink is not followed out of the store.
    const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const info = await handle.stat();
      if (!info.isFile() || info.size > MAX_FILE_BYTES) return entries;
      const value = JSON.parse(await handle.readFile('utf8')) as { version?: unknown; root?: unknown; entries?: unknown };
      if (value?.version !== 1 || value.root !== root || !value.entries || typeof value.entries !== 'object' || Array.isArray(value.entries)) return entries;
      for (const [path, entry] of Object.entries(value.entries as Record<string, unknown>)) {
        // Checked against ENTRY on lookup, not here: a build looks up what it copies, not every entry.
        if (typeof entry === 'string' && entries.size < MAX_ENTRIES) entries.set(path, entry);
      }
    } finally {
      await handle.close();
    }
  } catch {
    // Absent or corrupt: start empty.
  }
  return entries;
}

/** The least recently written context files beyond MAX_CONTEXTS go. */
async function trimContexts(dir: string): Promise<void> {
  const names = (await readdir(dir)).filter((name) => /^[a-f0-9]{64}\.json$/.test(name));
  if (names.length <= MAX_CONTEXTS) return;
  const dated = await Promise.all(names.map(async (name) => ({ name, mtime: (await stat(join(dir, name)).catch(() => undefined))?.mtimeMs ?? 0 })));
  dated.sort((a, b) => b.mtime - a.mtime);
  for (const { name } of dated.slice(MAX_CONTEXTS)) await rm(join(dir, name), { force: true });
}

/** The hash cache of the context at `root` (an absolute path) in `store`; `now` is when the build reads the context. */
export async function openHashCache(store: Store, root: string, now = Date.now()): Promise<HashCache> {
  const file = cacheFile(store, root);
  const entries = await readEntries(file, root);
  const used = new Map<string, string>();
  let changed = false;
  return {
    lookup(path, stats) {
      const entry = entries.get(path);
      if (entry === undefined) return undefined;
      const match = ENTRY.exec(entry);
      if (!match || match[1] !== statKey(stats)) return undefined;
      used.set(path, entry);
      return match[2];
    },
    record(path, stats, hex) {
      if (used.size >= MAX_ENTRIES) return;
      if (!(stats.ctimeMs < now - RACY_MARGIN_MS) || !/^[a-f0-9]{64}$/.test(hex)) return;
      const entry = `${statKey(stats)}:${hex}`;
      used.set(path, entry);
      if (entries.get(path) !== entry) changed = true;
    },
    async save() {
      if (!changed) return;
      changed = false;
      try {
        // This build's entries first, then the older ones, up to the bound.
        const kept = new Map(used);
        for (const [path, entry] of entries) {
          if (kept.size >= MAX_ENTRIES) break;
          if (!kept.has(path)) kept.set(path, entry);
        }
        const dir = join(store.root, HASH_CACHE_DIR);
        await mkdirClosed(dir);
        await store.writeFileAtomic(file, `${JSON.stringify({ version: 1, root, entries: Object.fromEntries(kept) })}\n`);
        await trimContexts(dir);
      } catch {
        // Not written: the next build hashes again.
      }
    },
  };
}
