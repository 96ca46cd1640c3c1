/**
 * A small image for the rootless runtime tests (overlay-mount, ctr-spawn):
 * the busybox fixture plus two layers made here with tar and added with
 * `umoci raw add-layer` (independent tools), so that it holds what a rootless
 * mount must get right:
 *
 *   layer 2: /gone.txt, /opq/lower-file, /data/keep
 *   layer 3: /.wh.gone.txt (a whiteout), /opq/.wh..wh..opq (opaque dir) with
 *            /opq/upper-file, /home/owned owned 1000:1000 (and /home/owned-dir)
 *
 * Seen through any driver: /gone.txt is gone, /opq holds upper-file only,
 * /data/keep is there, /home/owned belongs to 1000 (with a subordinate range).
 *
 * `rootlessTestLayout()` builds it (as root) in a fresh directory every user
 * can read, and returns `layout:tag` for skopeo; `removeLayout` deletes it.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { busyboxLayout } from './fixtures.js';

export const RL_TAG = 'rltest';

function tarOf(dir: string, out: string): void {
  execFileSync('tar', ['--numeric-owner', '--sort=name', '--mtime=@0', '-C', dir, '-cf', out, '.'], { stdio: 'pipe' });
}

/** Builds the image; returns `<layout>:rltest` (the layout dir is readable by everyone). */
export function rootlessTestLayout(): string {
  const base = mkdtempSync('/tmp/conveyor-rl-image-');
  chmodSync(base, 0o755);
  const layout = join(base, 'layout');
  cpSync(busyboxLayout(), layout, { recursive: true });

  const two = join(base, 'l2');
  mkdirSync(join(two, 'opq'), { recursive: true });
  mkdirSync(join(two, 'data'), { recursive: true });
  writeFileSync(join(two, 'gone.txt'), 'gone\n');
  writeFileSync(join(two, 'opq', 'lower-file'), 'lower\n');
  writeFileSync(join(two, 'data', 'keep'), 'keep\n');
  tarOf(two, join(base, 'l2.tar'));

  const three = join(base, 'l3');
  mkdirSync(join(three, 'opq'), { recursive: true });
  mkdirSync(join(three, 'home', 'owned-dir'), { recursive: true });
  writeFileSync(join(three, '.wh.gone.txt'), '');
  writeFileSync(join(three, 'opq', '.wh..wh..opq'), '');
  writeFileSync(join(three, 'opq', 'upper-file'), 'upper\n');
  writeFileSync(join(three, 'home', 'owned'), 'owned\n');
  chownSync(join(three, 'home', 'owned'), 1000, 1000);
  chownSync(join(three, 'home', 'owned-dir'), 1000, 1000);
  tarOf(three, join(base, 'l3.tar'));

  execFileSync('umoci', ['raw', 'add-layer', '--image', `${layout}:latest`, '--tag', 'l2', join(base, 'l2.tar')], { stdio: 'pipe' });
  execFileSync('umoci', ['raw', 'add-layer', '--image', `${layout}:l2`, '--tag', RL_TAG, join(base, 'l3.tar')], { stdio: 'pipe' });
  execFileSync('chmod', ['-R', 'a+rX', base]);
  return `${layout}:${RL_TAG}`;
}

/** Removes what rootlessTestLayout made. */
export function removeLayout(layoutAndTag: string): void {
  const base = dirname(layoutAndTag.replace(/:[^:/]*$/, ''));
  if (base.startsWith('/tmp/conveyor-rl-image-')) rmSync(base, { recursive: true, force: true });
}

/**
 * As root: /dev/net/tun and /dev/fuse readable and writable by everyone, as the kernel's devtmpfs
 * and every distribution make them (pasta and slirp4netns open the first, fuse-overlayfs the
 * second). Some VM images create them 0600; a user's container network then cannot start.
 * Not restored: 0666 is their normal mode, and other test files may be using them meanwhile.
 */
export function userDevicesAsDistributions(): void {
  for (const device of ['/dev/net/tun', '/dev/fuse']) {
    try {
      if ((statSync(device).mode & 0o666) !== 0o666) chmodSync(device, 0o666);
    } catch {
      // missing: the tests that need it say so
    }
  }
}
