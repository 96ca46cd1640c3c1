/**
 * Reading the kernel log (/dev/kmsg) without blocking: the place the kernel
 * says why an overlay mount failed and which memory cgroup an OOM kill hit.
 * Root only; returns nothing when the log cannot be read (a container without
 * /dev/kmsg), so callers treat it as a best-effort source of detail.
 */
import { closeSync, constants, openSync, readFileSync, readSync } from 'node:fs';

/**
 * Kernel log messages (text only, oldest first) that match `filter`, at most
 * `limit` of the newest, logged at or after `sinceMicros` (microseconds since
 * boot, see uptimeMicros). Each /dev/kmsg read returns one record:
 * `prio,seq,usec,flags;message`.
 */
export function readKernelLog(filter: (message: string) => boolean = () => true, limit = 50, sinceMicros = 0): string[] {
  let fd: number;
  try {
    fd = openSync('/dev/kmsg', constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return [];
  }
  const found: string[] = [];
  const buffer = Buffer.alloc(16 * 1024);
  try {
    for (let records = 0; records < 1_000_000; records++) {
      let n: number;
      try {
        n = readSync(fd, buffer, 0, buffer.length, null);
      } catch (error) {
        // EPIPE: the record we were at was overwritten; the next read continues.
        if ((error as NodeJS.ErrnoException).code === 'EPIPE') continue;
        break; // EAGAIN: the end of the log.
      }
      if (n <= 0) break;
      const record = buffer.toString('utf8', 0, n);
      const semicolon = record.indexOf(';');
      const micros = Number(record.slice(0, semicolon).split(',')[2]);
      const message = record.slice(semicolon + 1).split('\n')[0];
      if (!(micros < sinceMicros) && filter(message)) {
        found.push(message);
        if (found.length > limit) found.shift();
      }
    }
  } finally {
    closeSync(fd);
  }
  return found;
}

/** Time since boot in microseconds (/proc/uptime), the clock kernel log records are stamped with; 0 when unknown. */
export function uptimeMicros(): number {
  try {
    return Math.floor(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1e6) || 0;
  } catch {
    return 0;
  }
}
