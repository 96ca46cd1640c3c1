/**
 * Flat mode against umoci: the tree layer-unpack --flatten builds must match
 * what `umoci raw unpack` builds from the same image, entry for entry; and a
 * warning when other users can reach what it built and it is privileged.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { busyboxLayout, hasSharedImages, importToStore, SHARED_IMAGES } from '../../../test/helpers/fixtures.js';
import { runToolSync } from '../../../test/helpers/tools.js';
import { imageRecords, storeImage } from './helpers/store.js';
import { makeTar, type TarEntry } from './helpers/tars.js';
import { diffTrees } from './helpers/tree.js';

function umociUnpack(layoutAndTag: string, dir: string): void {
  execFileSync('umoci', ['raw', 'unpack', '--image', layoutAndTag, dir], { stdio: ['ignore', 'ignore', 'pipe'] });
}

function flattenFromStore(root: string, ref: string, dir: string): Record<string, unknown> {
  const records = imageRecords(root, ref).text;
  const run = runToolSync('layer-unpack', ['--root', root, '--flatten', dir], { input: records });
  if (run.code !== 0) throw new Error(`layer-unpack --flatten ${dir} exited ${run.code}: ${run.stderr}`);
  const lines = run.stdout.trim().split('\n');
  return JSON.parse(lines[0]);
}

const cases = [
  { name: 'busybox fixture v2 (2 layers)', layout: () => `${busyboxLayout()}:v2`, skip: false },
  {
    name: 'shared multi:latest (5 layers: whiteouts, opaque dirs, hardlinks, xattrs, caps)',
    layout: () => `${join(SHARED_IMAGES, 'multi')}:latest`,
    skip: !hasSharedImages,
  },
];

for (const c of cases) {
  t.test(c.name, { skip: c.skip ? 'shared images absent' : false }, async (t) => {
    const dir = t.testdir({});
    const layout = c.layout();
    const root = join(dir, 'store');
    importToStore(layout, root, 'localhost/test/image:latest');
    umociUnpack(layout, join(dir, 'umoci'));
    const record = flattenFromStore(root, 'localhost/test/image:latest', join(dir, 'ours'));
    t.equal(record.type, 'rootfs');
    t.equal(record.dir, join(dir, 'ours'));
    t.equal(record.layerDirs, undefined);
    t.strictSame(diffTrees(join(dir, 'umoci'), join(dir, 'ours')), [], 'identical to umoci raw unpack');
  });
}

t.test('raw layer files give the same tree as the image record', async (t) => {
  const dir = t.testdir({});
  const layout = busyboxLayout();
  const root = join(dir, 'store');
  importToStore(`${layout}:v2`, root, 'localhost/test/image:v2');
  flattenFromStore(root, 'localhost/test/image:v2', join(dir, 'viarecord'));
  const image = JSON.parse(imageRecords(root).text.trim());
  const files = image.layers.map((l: { digest: string }) => join(root, 'blobs', 'sha256', l.digest.slice(7)));
  const viaFiles = runToolSync('layer-unpack', ['--flatten', join(dir, 'viafiles'), ...files]);
  if (viaFiles.code !== 0) throw new Error(`layer-unpack --flatten exited ${viaFiles.code}: ${viaFiles.stderr}`);
  const out = JSON.parse(viaFiles.stdout);
  t.equal(out.type, 'rootfs');
  t.equal(out.dir, join(dir, 'viafiles'));
  t.strictSame(
    out.layers.map((l: { diffID: string }) => l.diffID),
    image.layers.map((l: { diffID: string }) => l.diffID),
    'diff IDs computed while streaming',
  );
  t.strictSame(diffTrees(join(dir, 'viarecord'), join(dir, 'viafiles')), []);
});

t.test('--flatten refuses a non-empty target and leaves it alone', async (t) => {
  const dir = t.testdir({ full: { keep: 'me' } });
  const layout = busyboxLayout();
  const index = JSON.parse(execFileSync('cat', [join(layout, 'index.json')], { encoding: 'utf8' }));
  t.ok(index.manifests.length > 0);
  mkdirSync(join(dir, 'empty'));
  const { code, stderr } = runToolSync('layer-unpack', ['--log-format=json', '--flatten', join(dir, 'full'), '/dev/null']);
  t.equal(code, 2);
  t.match(stderr, /ERR_USAGE/);
  t.ok(existsSync(join(dir, 'full', 'keep')));
});

t.test('--flatten warns when other users can reach setuid, setgid or capability-bearing files', async (t) => {
  const dir = t.testdir({});
  const tars = join(dir, 'tars');
  mkdirSync(tars);
  const write = async (name: string, entries: TarEntry[]) => writeFileSync(join(tars, name), await makeTar(entries));
  await write('setuid.tar', [
    { name: 'bin/', type: 'directory' },
    { name: 'bin/su', content: 'x', mode: 0o4755 },
  ]);
  await write('setgid.tar', [
    { name: 'bin/', type: 'directory' },
    { name: 'bin/wall', content: 'x', mode: 0o2755 },
  ]);
  await write('plain.tar', [
    { name: 'bin/', type: 'directory' },
    { name: 'bin/ls', content: 'x', mode: 0o755 },
  ]);
  // A file capability, as GNU tar records it (SCHILY.xattr.security.capability).
  const capSrc = join(dir, 'cap-src');
  mkdirSync(capSrc);
  writeFileSync(join(capSrc, 'ping'), 'x');
  execFileSync('setcap', ['cap_net_raw+ep', join(capSrc, 'ping')]);
  execFileSync('tar', ['--xattrs', '--xattrs-include=security.capability', '-C', capSrc, '-cf', join(tars, 'cap.tar'), 'ping']);

  /** A parent directory for the target: open (0755), closed (0700, ours) or another user's 0700. */
  const parent = (kind: 'open' | 'closed' | 'theirs', name: string) => {
    const p = join(dir, name);
    mkdirSync(p);
    chmodSync(p, kind === 'open' ? 0o755 : 0o700);
    if (kind === 'theirs') chownSync(p, 65534, 65534);
    return p;
  };
  const cases = [
    { name: 'setuid file, open path', tar: 'setuid.tar', parent: 'open', warn: /1 setuid\/setgid file \(bin\/su/ },
    { name: 'setgid file, open path', tar: 'setgid.tar', parent: 'open', warn: /1 setuid\/setgid file \(bin\/wall/ },
    { name: 'file capability, open path', tar: 'cap.tar', parent: 'open', warn: /1 file with capabilities \(ping/ },
    { name: 'setuid file under a 0700 directory of ours', tar: 'setuid.tar', parent: 'closed', warn: undefined },
    { name: "setuid file under another user's 0700 directory", tar: 'setuid.tar', parent: 'theirs', warn: /setuid\/setgid/ },
    { name: 'no privileged files, open path', tar: 'plain.tar', parent: 'open', warn: undefined },
  ] as const;
  for (const [i, c] of cases.entries()) {
    t.test(c.name, async (t) => {
      const target = join(parent(c.parent, `p${i}`), 'rootfs');
      const run = runToolSync('layer-unpack', ['--log-format=json', '--flatten', target, join(tars, c.tar)]);
      t.equal(run.code, 0, run.stderr);
      t.equal(JSON.parse(run.stdout).dir, target, 'the target stays where the caller put it');
      const warnings = run.stderr.split('\n').filter((l) => l.includes('"level":"warn"'));
      if (c.warn) {
        t.equal(warnings.length, 1, 'one warning');
        t.match(warnings[0], c.warn);
        t.match(warnings[0], 'other users can reach it');
      } else {
        t.strictSame(warnings, [], 'no warning');
      }
    });
  }

  t.test('from an image record too', async (t) => {
    const root = join(dir, 'store');
    await storeImage(root, 'localhost/suid:1', [
      await makeTar([
        { name: 'bin/', type: 'directory' },
        { name: 'bin/su', content: 'x', mode: 0o4755 },
      ]),
    ]);
    const target = join(parent('open', 'rec'), 'rootfs');
    const run = runToolSync('layer-unpack', ['--log-format=json', '--root', root, '--flatten', target], { input: imageRecords(root).text });
    t.equal(run.code, 0, run.stderr);
    t.match(run.stderr, /"level":"warn".*1 setuid\/setgid file \(bin\/su/);
  });
});
