/**
 * Streaming a large body in a fresh process is slowed by page faults: every
 * 64 KB socket read lands in new memory, and the chunks already hashed and
 * written are freed only when V8 collects, which external memory alone rarely
 * triggers. A young-generation collection every few MiB lets malloc reuse
 * them. Measured on a 30 MB blob over loopback: 11.8k → 4.2k minor faults,
 * 295 → 131 ms.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Collect = (options?: { type?: 'minor' | 'major' }) => void;
let collect: Collect | null | undefined;

/** Runs a minor GC; a no-op where the engine does not allow it. */
function collectYoungGarbage(): void {
  if (collect === undefined) {
    try {
      const existing = (globalThis as { gc?: Collect }).gc;
      if (existing) collect = existing;
      else {
        setFlagsFromString('--expose-gc');
        collect = runInNewContext('gc') as Collect;
      }
    } catch {
      collect = null;
    }
  }
  collect?.({ type: 'minor' });
}

/** Calls collectYoungGarbage once per `every` bytes fed to it. */
export function garbageCollectorEvery(every: number): (bytes: number) => void {
  let since = 0;
  return (bytes) => {
    since += bytes;
    if (since >= every) {
      since = 0;
      collectYoungGarbage();
    }
  };
}
