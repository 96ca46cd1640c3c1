/**
 * Frees the buffers a thread dropped, every few MiB of data through it.
 *
 * Each inflated chunk is a fresh buffer (zlib's output, and its copy on the
 * thread that receives it); dropped ones are freed only when V8 collects, and
 * V8 waits for ~64 MB of external memory before it does, while the thread's
 * small JS heap never asks. Those megabytes sat in malloc's arenas (~40 MB on
 * the inflate thread, ~30 MB on the main one: peak RSS 176 MB for the debian
 * layer). A young-generation collection every COLLECT_EVERY bytes (well under
 * a millisecond: the young heap is small) keeps that garbage to a few MiB.
 *
 * Node exposes gc() only behind --expose-gc: the flag is set at run time and
 * the function taken from a fresh context (V8 installs it there). If that
 * fails (another runtime), counting goes on and nothing is collected.
 *
 * The inflate and writer threads start with a small young generation
 * (THREAD_LIMITS): what they allocate on the JS heap is messages and
 * operations, which die at once, and V8's default let each grow to ~10 MB.
 * The main thread's young generation is kept at its initial size once a
 * layer is unpacked (keepYoungGenerationSmall): V8 doubles it each time as
 * much survived a scavenge as it holds, which a layer of many small files
 * (the tree of what it wrote grows with every entry) does again and again,
 * up to 16 MB semi-spaces: ~34 MB of the 54 MB main heap at two 20,000-file
 * layers at once. Its flag cannot be set for a thread alone, nor before the
 * process starts (the tools' launcher is shared), but V8 reads it at each
 * growth, so setting it at run time stops the growth from then on; V8 sets it
 * back to 2 whenever it configures a new isolate's heap, so each inflate and
 * writer thread sets it again first thing.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Bytes of chunks between two collections (an inflate thread posts 256 KiB chunks). */
export const COLLECT_EVERY = 4 * 1024 * 1024;

/** Worker options for the threads that move layer data (resourceLimits). */
export const THREAD_LIMITS = { maxYoungGenerationSizeMb: 2 };

type Gc = (options?: { type: 'minor' | 'major' }) => void;

let gc: Gc | undefined | null;
let collected = 0;

/** Young-generation collections run on this thread so far (tested). */
export function collections(): number {
  return collected;
}

/** Whether this thread can collect (gc() was found; tested in the main and a worker thread). */
export function canCollect(): boolean {
  return youngGc() !== undefined;
}

function youngGc(): Gc | undefined {
  if (gc === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      const found = runInNewContext('typeof gc === "function" ? gc : undefined') as Gc | undefined;
      gc = found ?? null;
    } catch {
      gc = null;
    }
  }
  return gc ?? undefined;
}

/**
 * Stops the young generation from growing in this process (see the top of this file): when a
 * layer is unpacked, and first thing in each thread. If the flag is refused (another runtime),
 * nothing changes.
 */
export function keepYoungGenerationSmall(): void {
  try {
    setFlagsFromString('--semi-space-growth-factor=1');
  } catch {
    // Not V8's flag here: the young generation grows as before.
  }
}

/** A counter to call with each chunk's size: it collects the young generation each `every` bytes. */
export function collectEvery(every = COLLECT_EVERY): (bytes: number) => boolean {
  let since = 0;
  return (bytes) => {
    since += bytes;
    if (since < every) return false;
    since = 0;
    const collect = youngGc();
    if (!collect) return false;
    collect({ type: 'minor' });
    collected++;
    return true;
  };
}
