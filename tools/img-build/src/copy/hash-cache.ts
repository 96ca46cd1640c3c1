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
 * The same file keeps what getfattr found on a listing (the xattrs COPY keeps,
 * by path), under a fingerprint of the listing's paths and stats: setting or
 * removing an xattr changes the inode's ctime, so an unchanged fingerprint
 * means unchanged xattrs, and an unchanged rebuild runs no getfattr. The same
 * racy margin applies (every entry's ctime older than it). `"xattrs":
 * { "<fingerprint>": { "<path>": { "<name>": "<hex value>" } } }`, at most
 * MAX_XATTR_LISTINGS, only the paths that have kept xattrs.
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
export const MAX_XATTR_LISTINGS = 16;
/** Well above any filesystem's timestamp granularity (ext4/xfs/overlay: a clock tick, FAT: 2 s is not a build context). */
export const RACY_MARGIN_MS = 1000;
const MAX_FILE_BYTES = 32 * 1024 * 1024;
/** What an entry is: `<statKey>:<sha256 hex>` (lookup compares it without running this). */
export const ENTRY = /^(\d+:\d+:\d+:\d+:[0-9.e+-]+:[0-9.e+-]+):([a-f0-9]{64})$/;
const HEX = /^[a-f0-9]{64}$/;
const COLON = 0x3a;

export interface HashCache {
  /** The sha256 hex recorded for this path with exactly this stat, if any. */
  lookup(path: string, stats: Stats): string | undefined;
  /** Records a hash computed now (skipped for a file changed too recently to tell apart by its stat). */
  record(path: string, stats: Stats, hex: string): void;
  /** The kept xattrs (by host path) recorded for a listing with this fingerprint (listingFingerprint), if any. */
  xattrsOf(fingerprint: string): Map<string, Map<string, string>> | undefined;
  /** Records what getfattr found for a listing (skipped when an entry changed too recently: `newestCtimeMs`). */
  recordXattrs(fingerprint: string, newestCtimeMs: number, xattrs: Map<string, Map<string, string>>): void;
  /** Writes the cache back when something was recorded; errors are swallowed (an accelerator must not fail a build). */
  save(): Promise<void>;
}

/** xattrs by path, as recorded (names to latin1 byte strings, as readXattrPaths gives them). */
type XattrListing = Map<string, Map<string, string>>;

/**
 * A listing's identity for the xattr record: every entry's path and the stat fields of statKey, in
 * order (the numbers as float64 bytes, what statKey's text says, without formatting them per entry).
 */
export function listingFingerprint(entries: { hostPath: string; stats: Stats }[]): string {
  const numbers = new Float64Array(entries.length * 6);
  let paths = 'xattrs/v1\n';
  for (let i = 0; i < entries.length; i++) {
    const { hostPath, stats } = entries[i];
    paths += `${hostPath}\0`;
    const at = i * 6;
    numbers[at] = stats.dev;
    numbers[at + 1] = stats.ino;
    numbers[at + 2] = stats.size;
    numbers[at + 3] = stats.mode;
    numbers[at + 4] = stats.mtimeMs;
    numbers[at + 5] = stats.ctimeMs;
  }
  return createHash('sha256').update(paths).update(new Uint8Array(numbers.buffer)).digest('hex');
}

/** A recorded listing read back, or undefined when anything in it is not what we write. */
function parseListing(value: unknown): XattrListing | undefined {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const listing: XattrListing = new Map();
  for (const [path, names] of Object.entries(value)) {
    if (!names || typeof names !== 'object' || Array.isArray(names)) return undefined;
    const xattrs = new Map<string, string>();
    // Sorted by name, as sources.ts keeps them (the digest hashes them in this order).
    for (const [name, hex] of Object.entries(names).sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (typeof hex !== 'string' || !/^(?:[0-9a-f]{2})*$/.test(hex)) return undefined;
      xattrs.set(name, Buffer.from(hex, 'hex').toString('latin1'));
    }
    if (xattrs.size > 0) listing.set(path, xattrs);
  }
  return listing;
}

function serializeListing(listing: XattrListing): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const [path, xattrs] of listing) {
    out[path] = Object.fromEntries([...xattrs].map(([name, value]) => [name, Buffer.from(value, 'latin1').toString('hex')]));
  }
  return out;
}

export function statKey(stats: Stats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mode}:${stats.mtimeMs}:${stats.ctimeMs}`;
}

function cacheFile(store: Store, root: string): string {
  return join(store.root, HASH_CACHE_DIR, `${createHash('sha256').update(root).digest('hex')}.json`);
}

async function readEntries(file: string, root: string): Promise<{ entries: Map<string, string>; listings: Map<string, XattrListing> }> {
  const entries = new Map<string, string>();
  const listings = new Map<string, XattrListing>();
  try {
    // O_NOFOLLOW: a planted symlink is not followed out of the store.
    const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const info = await handle.stat();
      if (!info.isFile() || info.size > MAX_FILE_BYTES) return { entries, listings };
      const value = JSON.parse(await handle.readFile('utf8')) as { version?: unknown; root?: unknown; entries?: unknown; xattrs?: unknown };
      if (value?.version !== 1 || value.root !== root || !value.entries || typeof value.entries !== 'object' || Array.isArray(value.entries)) {
        return { entries, listings };
      }
      for (const [path, entry] of Object.entries(value.entries as Record<string, unknown>)) {
        // Checked against ENTRY on lookup, not here: a build looks up what it copies, not every entry.
        if (typeof entry === 'string' && entries.size < MAX_ENTRIES) entries.set(path, entry);
      }
      if (value.xattrs && typeof value.xattrs === 'object' && !Array.isArray(value.xattrs)) {
        for (const [fingerprint, recorded] of Object.entries(value.xattrs as Record<string, unknown>)) {
          const listing = HEX.test(fingerprint) && listings.size < MAX_XATTR_LISTINGS ? parseListing(recorded) : undefined;
          if (listing) listings.set(fingerprint, listing);
        }
      }
    } finally {
      await handle.close();
    }
  } catch {
    // Absent or corrupt: start empty.
  }
  return { entries, listings };
}

/** What this build used first, then the older records it did not use, up to `max` in all. */
function usedFirst<V>(used: Map<string, V>, older: Map<string, V>, max: number): Map<string, V> {
  const kept = new Map(used);
  for (const [key, value] of older) {
    if (kept.size >= max) break;
    if (!kept.has(key)) kept.set(key, value);
  }
  return kept;
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
  const { entries, listings } = await readEntries(file, root);
  const used = new Map<string, string>();
  const usedListings = new Map<string, XattrListing>();
  let changed = false;
  return {
    lookup(path, stats) {
      const entry = entries.get(path);
      if (entry === undefined) return undefined;
      // ENTRY.exec and a compare of its first group, without the match arrays: statKey(stats) always has
      // ENTRY's stat shape, so the entry matches with this stat exactly when it is "<statKey>:<64 hex>".
      const key = statKey(stats);
      if (entry.length !== key.length + 65 || entry.charCodeAt(key.length) !== COLON || !entry.startsWith(key)) return undefined;
      const hex = entry.slice(key.length + 1);
      if (!HEX.test(hex)) return undefined;
      used.set(path, entry);
      return hex;
    },
    record(path, stats, hex) {
      if (used.size >= MAX_ENTRIES) return;
      if (!(stats.ctimeMs < now - RACY_MARGIN_MS) || !HEX.test(hex)) return;
      const entry = `${statKey(stats)}:${hex}`;
      used.set(path, entry);
      if (entries.get(path) !== entry) changed = true;
    },
    xattrsOf(fingerprint) {
      const listing = listings.get(fingerprint);
      if (listing) usedListings.set(fingerprint, listing);
      return listing;
    },
    recordXattrs(fingerprint, newestCtimeMs, xattrs) {
      if (usedListings.size >= MAX_XATTR_LISTINGS || !(newestCtimeMs < now - RACY_MARGIN_MS) || !HEX.test(fingerprint)) return;
      usedListings.set(fingerprint, xattrs);
      if (!listings.has(fingerprint)) changed = true;
    },
    async save() {
      if (!changed) return;
      changed = false;
      try {
        const kept = usedFirst(used, entries, MAX_ENTRIES);
        const dir = join(store.root, HASH_CACHE_DIR);
        await mkdirClosed(dir);
        const keptListings = usedFirst(usedListings, listings, MAX_XATTR_LISTINGS);
        const xattrs = Object.fromEntries([...keptListings].map(([fingerprint, listing]) => [fingerprint, serializeListing(listing)]));
        await store.writeFileAtomic(
          file,
          `${JSON.stringify({ version: 1, root, entries: Object.fromEntries(kept), ...(keptListings.size > 0 ? { xattrs } : {}) })}\n`,
        );
        await trimContexts(dir);
      } catch {
        // Not written: the next build hashes again.
      }
    },
  };
}
