/**
 * The overlay drivers' pure parts (lib-common/overlay/driver.ts, copy.ts), table-driven:
 * CONVEYOR_OVERLAY_DRIVER parsing, the order tried, the driver read back from the mount table,
 * getfattr dumps of opaque dirs; and the copy driver's tree (as root: real whiteout devices)
 * against what overlayfs shows for the same layers.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { copyLayers, parseOpaqueDump } from '@conveyor/lib-common/overlay/copy';
import { driverOfFsType, driverOrder, fsTypeAt, parseDriver } from '@conveyor/lib-common/overlay/driver';

t.test('CONVEYOR_OVERLAY_DRIVER', async (t) => {
  const cases: [string | undefined, string | undefined][] = [
    [undefined, undefined],
    ['', undefined],
    ['auto', undefined],
    ['overlay', 'overlay'],
    ['fuse-overlayfs', 'fuse-overlayfs'],
    ['copy', 'copy'],
  ];
  for (const [value, want] of cases) t.equal(parseDriver(value), want, String(value));
  for (const bad of ['Overlay', 'vfs', 'copy ', 'overlay,copy']) t.throws(() => parseDriver(bad), { code: 'ERR_USAGE' }, bad);
});

t.test('driver order', async (t) => {
  t.strictSame(driverOrder(false), ['overlay'], 'root: kernel overlay only');
  t.strictSame(driverOrder(true), ['overlay', 'fuse-overlayfs', 'copy'], 'rootless: the fallbacks in order');
  t.strictSame(driverOrder(true, 'copy'), ['copy'], 'forced: that one only');
  t.strictSame(driverOrder(false, 'fuse-overlayfs'), ['fuse-overlayfs']);
});

t.test('the driver read back from mountinfo', async (t) => {
  const info = [
    '36 25 0:32 / /s/containers/a/merged rw,relatime shared:1 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w,userxattr',
    '37 25 0:33 / /s/containers/b/merged rw,nosuid,nodev,relatime - fuse.fuse-overlayfs fuse-overlayfs rw,user_id=0,group_id=0',
    '38 25 254:0 /s/containers/c/upper /s/containers/c/merged rw,relatime - ext4 /dev/vda rw',
    '39 25 0:34 / /s/with\\040space/merged rw - overlay overlay rw',
  ].join('\n');
  const cases: [string, string | undefined][] = [
    ['/s/containers/a/merged', 'overlay'],
    ['/s/containers/b/merged', 'fuse.fuse-overlayfs'],
    ['/s/containers/c/merged', 'ext4'],
    ['/s/with space/merged', 'overlay'],
    ['/s/containers/d/merged', undefined],
  ];
  for (const [target, want] of cases) t.equal(fsTypeAt(info, target), want, target);
  t.equal(driverOfFsType('overlay'), 'overlay');
  t.equal(driverOfFsType('fuse.fuse-overlayfs'), 'fuse-overlayfs');
  t.equal(driverOfFsType('ext4'), 'copy', 'a bind of the copied upper dir');
});

t.test('opaque dirs from a getfattr dump', async (t) => {
  const dump = [
    '# file: /l/etc/skel',
    'user.overlay.opaque="y"',
    '',
    '# file: /l/opt/a\\040b',
    'trusted.overlay.opaque="y"',
    '',
    '# file: /l/not',
    'user.overlay.opaque="n"',
    '',
    '# file: /l',
    'user.overlay.opaque="y"',
    '',
    '# file: /other/x',
    'user.overlay.opaque="y"',
  ].join('\n');
  t.strictSame([...parseOpaqueDump(dump, '/l')].sort(), ['', 'etc/skel', 'opt/a b']);
});

t.test('copyLayers applies whiteouts, opaque dirs and type changes as overlayfs does', async (t) => {
  const dir = t.testdir({});
  const layers = ['l1', 'l2', 'l3'].map((l) => join(dir, l));
  const files: Record<string, string> = {
    'l1/keep': 'k',
    'l1/gone': 'g',
    'l1/opq/old': 'o',
    'l1/dir-to-file/x': 'x',
    'l1/file-to-dir': 'f',
    'l1/over': '1',
    'l2/opq/new': 'n',
    'l2/dir-to-file': 'now a file',
    'l2/file-to-dir/y': 'y',
    'l2/over': '2',
    'l3/added': 'a',
  };
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  mkdirSync(join(dir, 'l3'), { recursive: true });
  execFileSync('mknod', [join(dir, 'l2', 'gone'), 'c', '0', '0']);
  execFileSync('setfattr', ['-n', 'user.overlay.opaque', '-v', 'y', join(dir, 'l2', 'opq')]);
  const dest = join(dir, 'dest');
  mkdirSync(dest);
  await copyLayers(layers, dest);
  const tree = (root: string): string[] =>
    readdirSync(root, { recursive: true, encoding: 'utf8' })
      .map((p) => p)
      .sort();
  t.strictSame(tree(dest), ['added', 'dir-to-file', 'file-to-dir', 'file-to-dir/y', 'keep', 'opq', 'opq/new', 'over'].sort());
  t.equal(execFileSync('cat', [join(dest, 'over'), join(dest, 'dir-to-file')], { encoding: 'utf8' }), '2now a file', 'the upper layer wins');

  // The kernel's view of the same layers, for comparison.
  const [merged, upper, work] = ['m', 'u', 'w'].map((d) => join(dir, d));
  for (const d of [merged, upper, work]) mkdirSync(d);
  execFileSync('unshare', [
    '--user',
    '--map-root-user',
    '--mount',
    'sh',
    '-c',
    `mount -t overlay overlay -o userxattr,lowerdir=${[...layers].reverse().join(':')},upperdir=${upper},workdir=${work} ${merged} && find ${merged} -mindepth 1 -printf '%P\\n' > ${join(dir, 'kernel.txt')}`,
  ]);
  const kernel = execFileSync('sort', [join(dir, 'kernel.txt')], { encoding: 'utf8' })
    .trim()
    .split('\n');
  t.strictSame(tree(dest), kernel.sort(), 'the same tree as kernel overlayfs');
});
