/**
 * gc.ts's pure parts, table-driven: overlay lowerdir options split on their
 * unescaped colons, overlay mounts read from mountinfo text, and which layer
 * dirs of a store a mount table keeps (named directly or through l/ links).
 * The collection itself runs in tools/img-prune/test.
 */
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mountedChains, overlayLowerdirs, splitLowerdir } from '../src/gc.js';
import { Store } from '../src/store.js';

// [lowerdir option, dirs]
const lowerdirs: [string, string[]][] = [
  ['/a/diff', ['/a/diff']],
  ['/a/diff:/b/diff', ['/a/diff', '/b/diff']],
  ['l1:l2:l3', ['l1', 'l2', 'l3']],
  ['/with\\:colon:/b', ['/with:colon', '/b']],
  ['', []],
];
for (const [option, dirs] of lowerdirs) t.strictSame(splitLowerdir(option), dirs, `splitLowerdir ${JSON.stringify(option)}`);

t.test('overlayLowerdirs reads overlay mounts from mountinfo, other filesystems skipped', async (t) => {
  const text = [
    '44 27 0:39 / /s/containers/x/merged rw,relatime - overlay overlay rw,lowerdir=/s/layers/aa/diff:/s/layers/bb/diff,upperdir=/s/u,workdir=/s/w',
    '45 27 0:40 / /with\\040space rw - overlay overlay rw,lowerdir=abc,upperdir=x,workdir=y',
    '22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw',
    'garbage line',
  ].join('\n');
  t.strictSame(overlayLowerdirs(text), [
    { target: '/s/containers/x/merged', lowerdirs: ['/s/layers/aa/diff', '/s/layers/bb/diff'] },
    { target: '/with space', lowerdirs: ['abc'] },
  ]);
});

t.test('mountedChains keeps layer dirs of the store named directly or through l/ links, nothing outside', async (t) => {
  const root = join(mkdtempSync('/tmp/conveyor-gc-'), 'store');
  t.teardown(() => rmSync(join(root, '..'), { recursive: true, force: true }));
  const a = 'a'.repeat(64);
  const b = 'b'.repeat(64);
  mkdirSync(join(root, 'layers', a, 'diff'), { recursive: true });
  mkdirSync(join(root, 'layers', b, 'diff'), { recursive: true });
  mkdirSync(join(root, 'l'));
  symlinkSync(`../layers/${b}/diff`, join(root, 'l', 'short'));
  const text = `1 1 0:1 / /m rw - overlay overlay rw,lowerdir=short:${root}/layers/${a}/diff:/elsewhere/layers/${'c'.repeat(64)}/diff,upperdir=u,workdir=w\n`;
  t.strictSame([...(await mountedChains(new Store(root), text))].sort(), [a, b]);
});

t.test('mountedChains keeps the layers of a fuse-overlayfs mount from its lowerdirs.json (mountinfo shows none)', async (t) => {
  const root = join(mkdtempSync('/tmp/conveyor-gc-'), 'store');
  t.teardown(() => rmSync(join(root, '..'), { recursive: true, force: true }));
  const [a, b, c] = ['a', 'b', 'c'].map((x) => x.repeat(64));
  for (const hex of [a, b, c]) mkdirSync(join(root, 'layers', hex, 'diff'), { recursive: true });
  const mounted = join(root, 'containers', 'x');
  const notMounted = join(root, 'containers', 'y');
  mkdirSync(join(mounted, 'merged'), { recursive: true });
  mkdirSync(join(notMounted, 'merged'), { recursive: true });
  writeFileSync(join(mounted, 'lowerdirs.json'), JSON.stringify([join(root, 'layers', a, 'diff'), 42, join(root, 'layers', b, 'diff')]));
  writeFileSync(join(notMounted, 'lowerdirs.json'), JSON.stringify([join(root, 'layers', c, 'diff')]));
  const text = [
    `50 1 0:50 / ${mounted}/merged rw - fuse.fuse-overlayfs fuse-overlayfs rw,user_id=0,group_id=0`,
    // A FUSE mount outside the store's containers/ names nothing.
    `51 1 0:51 / /elsewhere/merged rw - fuse.fuse-overlayfs fuse-overlayfs rw`,
  ].join('\n');
  t.strictSame([...(await mountedChains(new Store(root), text))].sort(), [a, b]);
});
