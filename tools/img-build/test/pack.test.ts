/**
 * packLayer: an upper dir -> a reproducible OCI layer blob. Proves the tar's
 * shape entry by entry (order, whiteouts, opaque markers, hardlinks, fifos,
 * xattrs as raw PAX bytes, owners, clamped mtimes), that digest, size and
 * diff ID are the blob's, that the same tree gives the same bytes whatever
 * its inode/readdir order and its mtimes above SOURCE_DATE_EPOCH, and that
 * what we pack unpacks to the same tree with layer-unpack and with GNU tar.
 * The overlay round trip: an upper made by a real overlay mount (a deleted
 * file, a removed and recreated directory), packed and applied over the
 * lower with layer-unpack --flatten, gives the merged view.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Store } from '@conveyor/lib-common/store';
import t from 'tap';
import { extract } from 'tar-stream';
import { diffTrees, readTree } from '../../layer-unpack/test/helpers/tree.js';
import { runToolSync } from '../../../test/helpers/tools.js';
import { packLayer } from '../dist/layer/pack.js';

const EPOCH = 1_600_000_000;
/** A v2 file capability (cap_net_bind_service+ep): binary bytes, some above 0x7f would mangle as UTF-8 text. */
const CAPABILITY = Buffer.from('0100000200040000000000000000000000000000', 'hex');
const BINARY_XATTR = Buffer.from([0x00, 0x80, 0xff, 0x0a, 0x3d]);

function scratch(t: Tap.Test): string {
  // Not tap's testdir (it lives in the checkout): overlays get mounted below this one.
  const dir = mkdtempSync('/tmp/img-build-pack-');
  t.teardown(() => {
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const point = line.split(' ')[4];
      if (point?.startsWith(`${dir}/`)) execFileSync('umount', ['-l', point]);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

function setfattr(path: string, name: string, value: Buffer): void {
  execFileSync('setfattr', ['-h', '-n', name, '-v', `0x${value.toString('hex')}`, path]);
}

/** The upper-dir-like tree most tests pack; `reverse` creates entries in the other order (other inodes, other readdir order). */
function buildTree(dir: string, options: { reverse?: boolean; mtime?: number } = {}): void {
  const steps: (() => void)[] = [
    () => mkdirSync(join(dir, 'bin')),
    () => writeFileSync(join(dir, 'bin', 'tool'), '#!/bin/sh\necho tool\n', { mode: 0o755 }),
    () => writeFileSync(join(dir, 'bin', 'suid'), 'setuid', { mode: 0o644 }),
    () => mkdirSync(join(dir, 'etc')),
    () => writeFileSync(join(dir, 'etc', 'config'), 'a=1\n'),
    () => mkdirSync(join(dir, 'tmp')),
    () => symlinkSync('/etc/config', join(dir, 'abs-link')),
    () => symlinkSync(`../${'t'.repeat(150)}`, join(dir, 'long-link')),
    () => writeFileSync(join(dir, 'caf\u00e9-\u00fc.txt'), 'utf-8 name'),
    () => mkdirSync(join(dir, 'd'.repeat(60), 'e'.repeat(60)), { recursive: true }),
    () => writeFileSync(join(dir, 'd'.repeat(60), 'e'.repeat(60), 'f'.repeat(40)), 'deep'),
    () => execFileSync('mkfifo', [join(dir, 'fifo')], { stdio: 'ignore' }),
    () => execFileSync('mknod', [join(dir, 'gone'), 'c', '0', '0'], { stdio: 'ignore' }),
    () => mkdirSync(join(dir, 'opaque')),
    () => writeFileSync(join(dir, 'opaque', '-early'), 'sorts before .wh..wh..opq'),
    () => writeFileSync(join(dir, 'with-xattrs'), 'x'),
  ];
  for (const step of options.reverse ? [...steps].reverse() : steps) {
    try {
      step();
    } catch (error) {
      if (!options.reverse) throw error;
    }
  }
  if (options.reverse)
    for (const step of steps) {
      try {
        step();
      } catch {
        // made already
      }
    }
  linkSync(join(dir, 'bin', 'tool'), join(dir, 'etc', 'tool-hardlink'));
  chmodSync(join(dir, 'bin', 'suid'), 0o4755);
  chmodSync(join(dir, 'tmp'), 0o1777);
  setfattr(join(dir, 'opaque'), 'trusted.overlay.opaque', Buffer.from('y'));
  setfattr(join(dir, 'etc'), 'trusted.overlay.origin', Buffer.from('host-only'));
  setfattr(join(dir, 'with-xattrs'), 'user.binary', BINARY_XATTR);
  setfattr(join(dir, 'with-xattrs'), 'security.capability', CAPABILITY);
  // A PAX header of ours (xattrs) must carry a long name too (user.* xattrs cannot sit on symlinks, so no long link target with them).
  setfattr(join(dir, 'd'.repeat(60), 'e'.repeat(60), 'f'.repeat(40)), 'user.deep', Buffer.from('long name'));
  execFileSync('chown', ['-h', '1234:5678', join(dir, 'etc', 'config'), join(dir, 'abs-link')]);
  const mtime = options.mtime ?? EPOCH + 1000;
  execFileSync('find', [dir, '-mindepth', '1', '-exec', 'touch', '-h', '-d', `@${mtime}`, '{}', '+']);
}

interface ListedEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: number;
  linkname: string | null;
  size: number;
}

/** The raw tar's entries, in order, with the raw PAX records of each (tar-stream decodes them as UTF-8, so they are re-read from the bytes). */
async function listTar(tar: Buffer): Promise<ListedEntry[]> {
  const entries: ListedEntry[] = [];
  const ex = extract();
  ex.on('entry', (h, stream, next) => {
    entries.push({
      name: h.name,
      type: h.type as string,
      mode: h.mode ?? 0,
      uid: h.uid ?? 0,
      gid: h.gid ?? 0,
      uname: h.uname ?? '',
      gname: h.gname ?? '',
      mtime: Math.floor((h.mtime?.getTime() ?? 0) / 1000),
      linkname: h.linkname ?? null,
      size: h.size ?? 0,
    });
    stream.on('end', () => next());
    stream.resume();
  });
  await new Promise<void>((resolve, reject) => {
    ex.on('finish', resolve);
    ex.on('error', reject);
    ex.end(tar);
  });
  return entries;
}

/** The raw value of PAX record `key` in the PAX header before the entry named `name` (placeholder names are ASCII tails). */
function paxValue(tar: Buffer, key: string): Buffer | undefined {
  const needle = Buffer.from(` ${key}=`);
  const at = tar.indexOf(needle);
  if (at < 0) return undefined;
  let start = at;
  while (start > 0 && tar[start - 1] >= 0x30 && tar[start - 1] <= 0x39) start--;
  const length = Number(tar.toString('latin1', start, at));
  return tar.subarray(at + needle.length, start + length - 1);
}

t.test('the tar, entry by entry', async (t) => {
  const dir = scratch(t);
  const upper = join(dir, 'upper');
  mkdirSync(upper);
  buildTree(upper);
  const store = new Store(join(dir, 'store'));
  const packed = await packLayer({ upperDir: upper, store, sourceDateEpoch: EPOCH });
  const blob = readFileSync(store.blobPath(packed.descriptor.digest));
  t.equal(packed.descriptor.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
  t.equal(packed.descriptor.size, blob.length, 'size is the blob size');
  t.equal(packed.descriptor.digest, `sha256:${createHash('sha256').update(blob).digest('hex')}`, 'digest is the blob digest');
  const tar = gunzipSync(blob);
  t.equal(packed.diffID, `sha256:${createHash('sha256').update(tar).digest('hex')}`, 'diff ID is the tar digest');
  t.equal(packed.empty, false);
  t.equal(blob.readUInt32LE(4), 0, 'gzip header mtime 0');
  t.equal(blob[3] & 0x08, 0, 'gzip header carries no file name');
  t.same(readdirSync(join(dir, 'store', 'tmp')), [], 'nothing left in tmp/');

  const entries = await listTar(tar);
  const names = entries.map((e) => e.name.replace(/\/$/, ''));
  const deep = `${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(40)}`;
  t.same(
    names,
    [
      '.wh.gone',
      'abs-link',
      'bin',
      'bin/suid',
      'bin/tool',
      'caf\u00e9-\u00fc.txt',
      'd'.repeat(60),
      `${'d'.repeat(60)}/${'e'.repeat(60)}`,
      deep,
      'etc',
      'etc/config',
      'etc/tool-hardlink',
      'fifo',
      'long-link',
      'opaque',
      'opaque/.wh..wh..opq',
      'opaque/-early',
      'tmp',
      // PAX carries the real name; the ustar field holds an ASCII stand-in, which tar-stream reads back as the PAX path.
      'with-xattrs',
    ],
    'byte order, parents first, the opaque marker right after its directory',
  );
  const byName = new Map(entries.map((e) => [e.name.replace(/\/$/, ''), e]));
  t.match(byName.get('.wh.gone'), { type: 'file', size: 0, uid: 0, gid: 0 }, 'whiteout -> empty .wh. file');
  t.match(byName.get('opaque/.wh..wh..opq'), { type: 'file', size: 0 }, 'opaque marker');
  t.match(byName.get('etc/tool-hardlink'), { type: 'link', linkname: 'bin/tool', size: 0 }, 'hardlink to the first name');
  t.match(byName.get('fifo'), { type: 'fifo' }, 'fifo kept');
  t.match(byName.get('abs-link'), { type: 'symlink', linkname: '/etc/config', uid: 1234, gid: 5678 }, 'symlink verbatim, numeric owner');
  t.equal(byName.get('long-link')?.linkname, `../${'t'.repeat(150)}`, 'long symlink target');
  t.equal(byName.get('bin/suid')?.mode, 0o4755, 'setuid bit kept');
  t.equal(byName.get('tmp')?.mode, 0o1777, 'sticky bit kept');
  t.match(byName.get('etc/config'), { uid: 1234, gid: 5678 });
  t.ok(
    entries.every((e) => e.uname === '' && e.gname === ''),
    'no uname/gname',
  );
  t.ok(
    entries.every((e) => e.mtime === EPOCH),
    'every mtime clamped to SOURCE_DATE_EPOCH',
  );
  t.same(paxValue(tar, 'SCHILY.xattr.user.binary'), BINARY_XATTR, 'user.* xattr as raw bytes');
  t.equal(paxValue(tar, 'SCHILY.xattr.user.deep')?.toString(), 'long name', 'xattrs on a long name');
  t.same(paxValue(tar, 'SCHILY.xattr.security.capability'), CAPABILITY, 'security.capability as raw bytes');
  t.equal(tar.indexOf('trusted.overlay'), -1, 'no trusted.overlay.* in the tar');
});

t.test('reproducible: other inode and readdir order, other mtimes above the epoch', async (t) => {
  const dir = scratch(t);
  const store = new Store(join(dir, 'store'));
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  mkdirSync(a);
  mkdirSync(b);
  buildTree(a, { mtime: EPOCH + 10 });
  buildTree(b, { reverse: true, mtime: EPOCH + 99999 });
  const first = await packLayer({ upperDir: a, store, sourceDateEpoch: EPOCH });
  const second = await packLayer({ upperDir: b, store, sourceDateEpoch: EPOCH });
  t.equal(second.diffID, first.diffID, 'same diff ID');
  t.same(second.descriptor, first.descriptor, 'same digest and size');
  // The control: without the clamp the mtimes differ, and so must the layers.
  const unclamped = await packLayer({ upperDir: b, store });
  t.not(unclamped.diffID, first.diffID, 'mtimes above the epoch count when there is no epoch');
  // A byte of content is a new layer.
  writeFileSync(join(b, 'etc', 'config'), 'a=2\n');
  execFileSync('touch', ['-d', `@${EPOCH + 5}`, join(b, 'etc', 'config')]);
  const changed = await packLayer({ upperDir: b, store, sourceDateEpoch: EPOCH });
  t.not(changed.diffID, first.diffID, 'a changed byte changes the diff ID');
});

t.test('an empty upper dir is an empty layer', async (t) => {
  const dir = scratch(t);
  mkdirSync(join(dir, 'upper'));
  const packed = await packLayer({ upperDir: join(dir, 'upper'), store: new Store(join(dir, 'store')) });
  t.equal(packed.empty, true);
  t.equal(packed.diffID, `sha256:${createHash('sha256').update(Buffer.alloc(1024)).digest('hex')}`, 'the empty tar (1024 zero bytes)');
  t.ok(existsSync(new Store(join(dir, 'store')).blobPath(packed.descriptor.digest)), 'its blob is stored');
});

t.test("a dead packer's temp layer is removed by the next pack, a live one's kept", async (t) => {
  // As a SIGKILLed img-build leaves it mid-pack (test/crash.test.ts kills real builds).
  const dir = scratch(t);
  mkdirSync(join(dir, 'upper'));
  const store = new Store(join(dir, 'store'));
  mkdirSync(store.tmpDir, { recursive: true });
  writeFileSync(join(store.tmpDir, 'layer-999999999.1.abcd.tmp'), 'a crashed build');
  writeFileSync(join(store.tmpDir, `layer-${process.pid}.0.abcd.tmp`), 'a running build');
  await packLayer({ upperDir: join(dir, 'upper'), store });
  t.same(
    readdirSync(store.tmpDir).filter((name) => name.startsWith('layer-')),
    [`layer-${process.pid}.0.abcd.tmp`],
  );
});

t.test('round trip: layer-unpack --flatten and GNU tar give back the tree', async (t) => {
  const dir = scratch(t);
  const upper = join(dir, 'upper');
  mkdirSync(upper);
  buildTree(upper);
  // What a layer means: whiteouts and the opaque marker are instructions, not files; trusted.* stays on the host.
  rmSync(join(upper, 'gone'));
  execFileSync('setfattr', ['-x', 'trusted.overlay.opaque', join(upper, 'opaque')]);
  const store = new Store(join(dir, 'store'));
  const packed = await packLayer({ upperDir: upper, store });
  const blob = store.blobPath(packed.descriptor.digest);

  const ours = join(dir, 'ours');
  const run = runToolSync('layer-unpack', ['--flatten', ours, blob]);
  t.equal(run.code, 0, `layer-unpack exits 0 (${run.stderr})`);
  t.same(diffTrees(upper, ours), [], 'layer-unpack: the same tree (names, types, modes, owners, contents, links, xattrs)');

  const gnu = join(dir, 'gnu');
  mkdirSync(gnu);
  execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpzf', blob, '-C', gnu]);
  const ignoreRootMode = (tree: ReturnType<typeof readTree>) => {
    tree.entries.delete('.');
    return tree;
  };
  const gnuTree = ignoreRootMode(readTree(gnu));
  const upperTree = ignoreRootMode(readTree(upper));
  t.same(
    [...gnuTree.entries.keys()].filter((k) => JSON.stringify(gnuTree.entries.get(k)) !== JSON.stringify(upperTree.entries.get(k))),
    [],
    'GNU tar: the same entries',
  );
  t.same(gnuTree.links, upperTree.links, 'GNU tar: the same hardlink groups');
});

t.test('overlay round trip: deleted file, removed and recreated directory', async (t) => {
  const dir = scratch(t);
  const [lower, upper, work, merged] = ['lower', 'upper', 'work', 'merged'].map((name) => join(dir, name));
  for (const d of [lower, upper, work, merged]) mkdirSync(d);
  mkdirSync(join(lower, 'keep'));
  writeFileSync(join(lower, 'keep', 'a'), 'a');
  writeFileSync(join(lower, 'keep', 'b'), 'b');
  mkdirSync(join(lower, 'replace', 'inner'), { recursive: true });
  writeFileSync(join(lower, 'replace', 'old'), 'old');
  writeFileSync(join(lower, 'replace', 'inner', 'x'), 'x');
  writeFileSync(join(lower, 'delete-me'), 'bye');
  const store = new Store(join(dir, 'store'));
  const lowerLayer = await packLayer({ upperDir: lower, store });

  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, merged]);
  rmSync(join(merged, 'delete-me'));
  rmSync(join(merged, 'keep', 'b'));
  rmSync(join(merged, 'replace'), { recursive: true });
  mkdirSync(join(merged, 'replace'));
  writeFileSync(join(merged, 'replace', 'new'), 'new');
  writeFileSync(join(merged, 'keep', 'c'), 'c');
  chmodSync(join(merged, 'keep', 'a'), 0o600);
  const expected = readTree(merged);
  execFileSync('umount', [merged]);

  const upperLayer = await packLayer({ upperDir: upper, store });
  const tarNames = (await listTar(gunzipSync(readFileSync(store.blobPath(upperLayer.descriptor.digest))))).map((e) => e.name);
  t.ok(tarNames.includes('.wh.delete-me') && tarNames.includes('keep/.wh.b'), 'deletions became whiteouts');
  t.ok(tarNames.includes('replace/.wh..wh..opq'), 'the recreated directory is opaque');

  const target = join(dir, 'applied');
  const run = runToolSync('layer-unpack', ['--flatten', target, store.blobPath(lowerLayer.descriptor.digest), store.blobPath(upperLayer.descriptor.digest)]);
  t.equal(run.code, 0, `layer-unpack exits 0 (${run.stderr})`);
  const applied = readTree(target);
  applied.entries.delete('.');
  expected.entries.delete('.');
  const diffs = [...new Set([...applied.entries.keys(), ...expected.entries.keys()])].filter(
    (k) => JSON.stringify(applied.entries.get(k)) !== JSON.stringify(expected.entries.get(k)),
  );
  t.same(diffs, [], 'lower + packed upper = the merged view');
});

t.test('trees a layer cannot represent are refused, nothing stored', async (t) => {
  const cases: { name: string; make: (upper: string) => void; code: string }[] = [
    { name: 'a file named .wh.*', make: (u) => writeFileSync(join(u, '.wh.sneaky'), ''), code: 'ERR_LAYER_INVALID' },
    {
      name: 'a name that is not UTF-8',
      make: (u) => writeFileSync(Buffer.concat([Buffer.from(`${u}/bad-`), Buffer.from([0xff, 0xfe])]), ''),
      code: 'ERR_LAYER_INVALID',
    },
    {
      name: 'an overlay redirect (data in a lower layer)',
      make: (u) => {
        mkdirSync(join(u, 'moved'));
        setfattr(join(u, 'moved'), 'trusted.overlay.redirect', Buffer.from('/orig'));
      },
      code: 'ERR_LAYER_INVALID',
    },
  ];
  for (const c of cases) {
    const dir = scratch(t);
    const upper = join(dir, 'upper');
    mkdirSync(upper);
    writeFileSync(join(upper, 'fine'), 'fine');
    c.make(upper);
    const store = new Store(join(dir, 'store'));
    await t.rejects(packLayer({ upperDir: upper, store }), { code: c.code }, c.name);
    const blobs = existsSync(store.blobsDir) ? readdirSync(store.blobsDir) : [];
    const temps = existsSync(store.tmpDir) ? readdirSync(store.tmpDir) : [];
    t.same([...blobs, ...temps], [], `${c.name}: no blob, no temp file`);
  }
});

t.test('setting the times of the upper dir does not matter, its own entry is not packed', async (t) => {
  const dir = scratch(t);
  const upper = join(dir, 'upper');
  mkdirSync(upper);
  writeFileSync(join(upper, 'f'), 'f');
  utimesSync(join(upper, 'f'), EPOCH, EPOCH);
  const store = new Store(join(dir, 'store'));
  const first = await packLayer({ upperDir: upper, store });
  chmodSync(upper, 0o700);
  utimesSync(upper, EPOCH + 5, EPOCH + 5);
  const second = await packLayer({ upperDir: upper, store });
  t.equal(second.diffID, first.diffID);
});
