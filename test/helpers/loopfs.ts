/**
 * A small real file system for a store that runs out of space or turns
 * read-only: an ext4 image in a file (truncate + mkfs.ext4, no reserved
 * blocks, so root sees the space statfs reports) loop-mounted on a fresh
 * directory. Root only. Unmounted and removed in the test's teardown.
 *
 *   const fs = loopFilesystem(t, 128);
 *   fs.leaveFree(20e6);     // a filler file takes all but ~20 MB
 *   fs.removeFiller();      // space again
 *   fs.readOnly(true);      // mount -o remount,ro
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface LoopFilesystem {
  /** The mount point. */
  dir: string;
  /** Bytes free for root (no reserve). */
  free(): number;
  /** Fills the file system with a filler file until about `bytes` are free. */
  leaveFree(bytes: number): void;
  removeFiller(): void;
  readOnly(on: boolean): void;
}

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

export function loopFilesystem(t: Teardown, sizeMiB: number): LoopFilesystem {
  const work = mkdtempSync(join(tmpdir(), 'conveyor-loopfs-'));
  const image = join(work, 'fs.img');
  const dir = join(work, 'mnt');
  execFileSync('mkdir', ['-m', '0700', dir]);
  execFileSync('truncate', ['-s', `${sizeMiB}M`, image]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', image]);
  execFileSync('mount', ['-o', 'loop', image, dir]);
  execFileSync('chmod', ['0700', dir]);
  const filler = join(dir, 'filler');
  t.teardown(() => {
    try {
      execFileSync('umount', [dir]);
    } catch {
      execFileSync('umount', ['-l', dir]);
    }
    rmSync(work, { recursive: true, force: true });
  });
  const free = () => {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  };
  return {
    dir,
    free,
    leaveFree(bytes) {
      execFileSync('rm', ['-f', filler]);
      const take = free() - bytes;
      if (take > 0) execFileSync('fallocate', ['-l', String(take), filler]);
      execFileSync('sync', ['-f', dir]);
    },
    removeFiller() {
      execFileSync('rm', ['-f', filler]);
      execFileSync('sync', ['-f', dir]);
    },
    readOnly(on) {
      execFileSync('mount', ['-o', `remount,${on ? 'ro' : 'rw'}`, dir]);
    },
  };
}
