/**
 * gc.ts's pure parts, table-driven: overlay lowerdir options split on their
 * unescaped colons, overlay mounts read from mountinfo text, a runtime spec's
 * root-mount lower dirs, and which layer dirs of a store a mount table or the
 * containers' bundles (config.json, forged ones included) keep.
 * The collection itself runs in tools/img-prune/test.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MAX_BUNDLE_CONFIG_BYTES, mountedChains, overlayLowerdirs, specRootLowerdirs, splitLowerdir } from '../src/gc.js';
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

// [config.json text, the root mount's lower dirs]
const specs: [string, string[]][] = [
  [
    JSON.stringify({ mounts: [{ destination: '/', type: 'overlay', options: ['lowerdir=/s/a:/s/b', 'upperdir=/u', 'workdir=/w', 'volatile'] }] }),
    ['/s/a', '/s/b'],
  ],
  // The first mount on "/" counts; a later one does not.
  [
    JSON.stringify({ mounts: [{ destination: '/proc' }, { destination: '/', options: ['lowerdir=/s/a'] }, { destination: '/', options: ['lowerdir=/s/z'] }] }),
    ['/s/a'],
  ],
  [JSON.stringify({ mounts: [{ destination: '/', options: ['ro', 42, 'lowerdir=/s/a'] }] }), ['/s/a']],
  [JSON.stringify({ mounts: [{ destination: '/', options: 'lowerdir=/s/a' }] }), []],
  [JSON.stringify({ mounts: [{ destination: '/tmp', options: ['lowerdir=/s/a'] }] }), []],
  [JSON.stringify({ mounts: [null, 'x', { destination: '/', options: ['upperdir=/u'] }] }), []],
  [JSON.stringify({ mounts: {} }), []],
  [JSON.stringify({ root: { path: 'rootfs' } }), []],
  ['null', []],
  ['[]', []],
  ['{"mounts": [', []],
  ['', []],
];
for (const [text, dirs] of specs) t.strictSame(specRootLowerdirs(text), dirs, `specRootLowerdirs ${text.slice(0, 60)}`);

t.test('mountedChains keeps the layers a bundle hands the runtime to mount (config.json), inside layers/ only; forged bundles keep nothing more', async (t) => {
  const root = join(mkdtempSync('/tmp/conveyor-gc-'), 'store');
  t.teardown(() => rmSync(join(root, '..'), { recursive: true, force: true }));
  const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map((x) => x.repeat(64));
  for (const hex of [a, b, c, d, e]) mkdirSync(join(root, 'layers', hex, 'diff'), { recursive: true });
  const outside = join(root, '..', 'outside', 'layers', d);
  mkdirSync(join(outside, 'diff'), { recursive: true });
  const spec = (...lower: string[]) =>
    JSON.stringify({ mounts: [{ destination: '/', type: 'overlay', source: 'overlay', options: [`lowerdir=${lower.join(':')}`, 'upperdir=u', 'workdir=w'] }] });
  const bundle = (id: string, text: string) => {
    mkdirSync(join(root, 'containers', id), { recursive: true });
    writeFileSync(join(root, 'containers', id, 'config.json'), text);
  };
  bundle('running', spec(join(root, 'layers', a, 'diff'), join(root, 'layers', b, 'diff')));
  // Forged: paths that leave layers/ (.., outside the store, a symlink out), not JSON, too large.
  bundle('dotdot', spec(`${root}/layers/../layers/../../outside/layers/${d}/diff`, '/etc'));
  symlinkSync(outside, join(root, 'layers', 'escape'));
  bundle('via-link', spec(join(root, 'layers', 'escape', 'diff')));
  bundle('garbage', '{"mounts": [{"destination": "/", "options": ["lowerdir=');
  bundle('huge', spec(join(root, 'layers', c, 'diff')) + ' '.repeat(MAX_BUNDLE_CONFIG_BYTES));
  // Not files: a symlink to a real spec (never followed), a FIFO (must not hang), a directory.
  const real = join(root, '..', 'real.json');
  writeFileSync(real, spec(join(root, 'layers', c, 'diff')));
  mkdirSync(join(root, 'containers', 'linked'));
  symlinkSync(real, join(root, 'containers', 'linked', 'config.json'));
  mkdirSync(join(root, 'containers', 'fifo'));
  execFileSync('mkfifo', [join(root, 'containers', 'fifo', 'config.json')]);
  mkdirSync(join(root, 'containers', 'dir', 'config.json'), { recursive: true });
  // A container entry that is a symlink to a directory elsewhere names nothing either.
  mkdirSync(join(root, '..', 'elsewhere'));
  writeFileSync(join(root, '..', 'elsewhere', 'config.json'), spec(join(root, 'layers', e, 'diff')));
  symlinkSync(join(root, '..', 'elsewhere'), join(root, 'containers', 'sneaky'));
  writeFileSync(join(root, 'containers', 'plain-file'), spec(join(root, 'layers', e, 'diff')));
  t.strictSame([...(await mountedChains(new Store(root), ''))].sort(), [a, b]);
});

t.test('mountedChains of a store with no containers/ (or an unreadable entry) is the mount table alone', async (t) => {
  const root = join(mkdtempSync('/tmp/conveyor-gc-'), 'store');
  t.teardown(() => rmSync(join(root, '..'), { recursive: true, force: true }));
  mkdirSync(join(root, 'layers', 'a'.repeat(64), 'diff'), { recursive: true });
  t.strictSame([...(await mountedChains(new Store(root), ''))], []);
  writeFileSync(join(root, 'containers'), 'not a directory');
  t.strictSame([...(await mountedChains(new Store(root), ''))], []);
});
