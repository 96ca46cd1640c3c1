/**
 * The rootless driver fallback of lib-common/overlay/mount.ts, end to end: overlay-mount run
 * inside a user namespace (unshare --map-root-user: rootless for isRootless) with a `mount` that
 * refuses overlayfs and, in the second case, a fuse-overlayfs that fails too (stand-ins first on
 * PATH; every other mount goes to the real one). The record's driver is the next one that worked,
 * a warning names the one that failed, and --unmount leaves nothing.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { jsonLines, toolPath } from '../../../test/helpers/tools.js';

const root = tempStore('conveyor-fallback-');
t.teardown(() => removeStore(root));
const rootfs = busyboxRootfs(root);
// Only root is mapped in the namespace below: a copy cannot give a file to an id it does not map
// (umoci's tree has /home/app of 1000). A user's own layers never hold such ids.
execFileSync('chown', ['-hR', '0:0', ...rootfs.layerDirs]);
const bin = join(root, '..', 'bin');
mkdirSync(bin);
writeFileSync(
  join(bin, 'mount'),
  '#!/bin/sh\n[ "$1" = "-t" ] && [ "$2" = overlay ] && { echo "mount: overlay refused (test)" >&2; exit 32; }\nexec /usr/bin/mount "$@"\n',
);
writeFileSync(join(bin, 'fuse-overlayfs-broken'), '#!/bin/sh\necho "fuse: device not found (test)" >&2\nexit 1\n');
chmodSync(join(bin, 'mount'), 0o755);
chmodSync(join(bin, 'fuse-overlayfs-broken'), 0o755);

/** overlay-mount, then what it saw of the mount and its --unmount, in one user + mount namespace. */
function mountInNamespace(path: string) {
  const script = [
    'node "$TOOL" --root "$ROOT" > "$ROOT/../mount.json" || exit 1',
    'grep -c " $ROOT/containers/" /proc/self/mountinfo',
    'node "$TOOL" --root "$ROOT" --unmount < "$ROOT/../mount.json" || exit 1',
    'grep -c " $ROOT/containers/" /proc/self/mountinfo; cat "$ROOT/../mount.json"',
  ].join('\n');
  return spawnSync('unshare', ['--user', '--map-root-user', '--mount', '--propagation', 'private', 'sh', '-c', script], {
    input: `${JSON.stringify(rootfs)}\n`,
    encoding: 'utf8',
    env: { PATH: path, TOOL: toolPath('overlay-mount'), ROOT: root },
  });
}

t.test('kernel overlay refused: fuse-overlayfs serves', { skip: existsSync('/usr/bin/fuse-overlayfs') ? false : 'no fuse-overlayfs' }, async (t) => {
  const run = mountInNamespace(`${bin}:/usr/bin:/bin:/usr/sbin:/sbin`);
  t.equal(run.status, 0, run.stderr);
  const [mounted, unmounted, record] = [run.stdout.split('\n')[0], run.stdout.split('\n')[1], jsonLines(run.stdout.split('\n').slice(2).join('\n'))[0]];
  t.equal(record?.driver, 'fuse-overlayfs');
  t.match(run.stderr, /overlay failed \(.*overlay refused \(test\).*\); trying the next driver/);
  t.equal(mounted, '1', 'mounted');
  t.equal(unmounted, '0', 'and unmounted');
});

t.test('fuse-overlayfs failing too: the copy serves', async (t) => {
  // A PATH where fuse-overlayfs is the failing stand-in.
  const fuseBin = join(root, '..', 'bin-nofuse');
  mkdirSync(fuseBin);
  for (const name of ['mount']) writeFileSync(join(fuseBin, name), '#!/bin/sh\nexec "$(dirname "$0")/../bin/mount" "$@"\n', { mode: 0o755 });
  writeFileSync(join(fuseBin, 'fuse-overlayfs'), '#!/bin/sh\nexec "$(dirname "$0")/../bin/fuse-overlayfs-broken" "$@"\n', { mode: 0o755 });
  const run = mountInNamespace(`${fuseBin}:/usr/bin:/bin:/usr/sbin:/sbin`);
  t.equal(run.status, 0, run.stderr);
  const record = jsonLines(run.stdout.split('\n').slice(2).join('\n'))[0];
  t.equal(record?.driver, 'copy');
  t.match(run.stderr, /fuse-overlayfs failed \(.*device not found \(test\).*\); trying the next driver/);
  t.strictSame(run.stdout.split('\n').slice(0, 2), ['1', '0'], 'mounted (a bind of the copy), then unmounted');
  t.strictSame(readdirSync(join(root, 'containers')), [], 'the container dir is gone');
});
