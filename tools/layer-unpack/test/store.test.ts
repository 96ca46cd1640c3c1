/**
 * Per-layer directories in the store: overlay-ready layers (checked with a real
 * overlay mount), reuse, crash recovery, diff ID verification, streaming from
 * `layer` records, concurrent unpacks, rootless unpack, zstd.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { busyboxLayout, hasSharedImages, importToStore, SHARED_IMAGES } from '../../../test/helpers/fixtures.js';
import { jsonLines, runTool, runToolSync, type ToolResult, toolPath } from '../../../test/helpers/tools.js';
import { poll } from './helpers/poll.js';
import { imageRecords, storeImage } from './helpers/store.js';
import { makeTar } from './helpers/tars.js';
import { diffTrees } from './helpers/tree.js';
import { killKeeper } from '../../../test/helpers/rootless.js';

function unpack(root: string, input: string, extra: string[] = [], opts: { user?: boolean } = {}): ToolResult {
  const args = ['--log-format=json', '--root', root, ...extra];
  if (!opts.user) return runToolSync('layer-unpack', args, { input });
  // env -i: tap wraps child processes to inject its NODE_OPTIONS hooks, which would try to
  // write tap's own files as the other user. setpriv is not our tool, so it runs directly.
  const run = spawnSync(
    'env',
    ['-i', `PATH=${process.env.PATH}`, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'node', toolPath('layer-unpack'), ...args],
    { input, encoding: 'utf8' },
  );
  return { code: run.status, signal: run.signal, stdout: run.stdout, stderr: run.stderr, records: jsonLines(run.stdout), logs: jsonLines(run.stderr) };
}

const layersDir = (root: string) => join(root, 'layers');
const staging = (root: string) => (existsSync(layersDir(root)) ? readdirSync(layersDir(root)).filter((n) => n.startsWith('.tmp-')) : []);

t.test('busybox fixture: per-layer dirs keyed by chain ID, meta.json, reuse', async (t) => {
  const root = join(t.testdir({}), 'store');
  importToStore(`${busyboxLayout()}:v2`, root, 'localhost/bb:v2');
  const {
    text,
    records: [image],
  } = imageRecords(root);
  const first = unpack(root, text + '{"type":"note","v":1,"x":1}\n');
  t.equal(first.code, 0, first.stderr);
  t.equal(first.records.length, 2);
  const [rootfs, note] = first.records;
  t.strictSame(note, { type: 'note', v: 1, x: 1 }, 'other records pass through unchanged');
  t.equal(rootfs.type, 'rootfs');
  t.equal(rootfs.ref, image.ref);
  t.strictSame(rootfs.layers, image.layers);
  t.strictSame(
    rootfs.layerDirs,
    image.layers.map((l: { chainID: string }) => join(root, 'layers', l.chainID.slice(7), 'diff')),
    'layerDirs bottom first, keyed by chain ID',
  );
  const meta = JSON.parse(readFileSync(join(root, 'layers', image.layers[1].chainID.slice(7), 'meta.json'), 'utf8'));
  t.match(meta, {
    chainID: image.layers[1].chainID,
    diffID: image.layers[1].diffID,
    digest: image.layers[1].digest,
    size: image.layers[1].size,
    rootless: false,
  });
  t.ok(Date.parse(meta.time) > 0);
  t.equal(readFileSync(join(rootfs.layerDirs[1], 'hello.txt'), 'utf8'), 'hello from v2\n');
  t.ok(existsSync(join(rootfs.layerDirs[0], 'bin', 'busybox')));
  t.equal(statSync(join(rootfs.layerDirs[0], 'home', 'app')).uid, 1000, 'ownership applied as root');
  t.strictSame(staging(root), []);

  const second = unpack(root, text);
  t.equal(second.code, 0);
  t.strictSame(second.records[0].layerDirs, rootfs.layerDirs);
  const again = JSON.parse(readFileSync(join(root, 'layers', image.layers[1].chainID.slice(7), 'meta.json'), 'utf8'));
  t.equal(again.time, meta.time, 'reused, not redone');
});

t.test('whiteouts and opaque dirs become overlayfs whiteouts; a real overlay mount agrees', async (t) => {
  const dir = t.testdir({});
  const root = join(dir, 'store');
  await storeImage(root, 'localhost/wh:1', [
    await makeTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/gone', content: 'lower' },
      { name: 'etc/kept', content: 'lower' },
      { name: 'skel/', type: 'directory' },
      { name: 'skel/old', content: 'lower' },
    ]),
    await makeTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/.wh.gone', content: '' },
      { name: 'skel/', type: 'directory' },
      { name: 'skel/.wh..wh..opq', content: '' },
      { name: 'skel/new', content: 'upper' },
    ]),
  ]);
  const run = unpack(root, imageRecords(root).text);
  t.equal(run.code, 0, run.stderr);
  const [lower, upper] = run.records[0].layerDirs;
  const wh = lstatSync(join(upper, 'etc', 'gone'));
  t.ok(wh.isCharacterDevice(), 'whiteout is a character device');
  t.equal(wh.rdev, 0, 'with device number 0/0');
  t.notOk(existsSync(join(upper, 'etc', '.wh.gone')), 'no .wh. file left');
  t.notOk(existsSync(join(upper, 'skel', '.wh..wh..opq')), 'no opaque marker file left');
  const xattr = execFileSync('getfattr', ['-h', '--only-values', '-n', 'trusted.overlay.opaque', join(upper, 'skel')], { encoding: 'utf8' });
  t.equal(xattr, 'y');
  const mnt = join(dir, 'mnt');
  const work = join(dir, 'work');
  const up = join(dir, 'up');
  for (const d of [mnt, work, up]) mkdirSync(d);
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${upper}:${lower},upperdir=${up},workdir=${work}`, mnt]);
  try {
    t.strictSame(readdirSync(join(mnt, 'etc')).sort(), ['kept']);
    t.strictSame(readdirSync(join(mnt, 'skel')).sort(), ['new']);
  } finally {
    execFileSync('umount', [mnt]);
  }
});

t.test('a half-unpacked layer (kill -9) is never used and is redone', async (t) => {
  const root = join(t.testdir({}), 'store');
  // A big-enough layer that the unpack is still running when we kill it.
  const big = Array.from({ length: 3000 }, (_, i) => ({ name: `d${i % 30}/f${i}`, content: Buffer.alloc(8192, i % 251) }));
  await storeImage(root, 'localhost/big:1', [await makeTar(big)]);
  const {
    text,
    records: [image],
  } = imageRecords(root);
  const child = spawn('node', [toolPath('layer-unpack'), '--root', root], { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.end(text);
  const exited = new Promise((r) => child.on('close', r));
  await poll(() => staging(root).length > 0 || existsSync(join(root, 'layers', image.layers[0].chainID.slice(7))), 'the unpack to start');
  child.kill('SIGKILL');
  await exited;
  const final = join(root, 'layers', image.layers[0].chainID.slice(7));
  if (!existsSync(final)) t.ok(staging(root).length > 0, 'the killed unpack left a staging dir behind');
  // A dead owner's staging dir, as a crash would leave it.
  mkdirSync(join(layersDir(root), `.tmp-${'0'.repeat(64)}-999999999-dead`, 'diff'), { recursive: true });
  const run = unpack(root, text);
  t.equal(run.code, 0, run.stderr);
  t.strictSame(staging(root), [], 'stale staging dirs removed');
  t.equal(readdirSync(join(final, 'diff', 'd7')).length, 100, 'complete layer');
});

t.test('a diff ID mismatch fails the layer and leaves nothing behind', async (t) => {
  const root = join(t.testdir({}), 'store');
  await storeImage(root, 'localhost/bad:1', [await makeTar([{ name: 'a', content: 'a' }])]);
  const {
    records: [image],
  } = imageRecords(root);
  const wrong = `sha256:${'1'.repeat(64)}`;
  const bad = { ...image, layers: [{ ...image.layers[0], diffID: wrong, chainID: wrong }] };
  const run = unpack(root, JSON.stringify(bad) + '\n');
  t.equal(run.code, 1);
  t.match(run.stderr, /"code":"ERR_DIGEST_MISMATCH"/);
  t.strictSame(run.records, []);
  t.notOk(existsSync(join(root, 'layers', '1'.repeat(64))));
  t.strictSame(staging(root), []);
});

t.test('a missing layer blob is reported as such', async (t) => {
  const root = join(t.testdir({}), 'store');
  await storeImage(root, 'localhost/gone:1', [await makeTar([{ name: 'a', content: 'a' }])]);
  const {
    text,
    records: [image],
  } = imageRecords(root);
  rmSync(join(root, 'blobs', 'sha256', image.layers[0].digest.slice(7)));
  const run = unpack(root, text);
  t.equal(run.code, 1);
  t.match(run.stderr, /"code":"ERR_IMAGE_NOT_FOUND"/);
  t.strictSame(staging(root), []);
});

t.test('an inconsistent chain ID is bad input', async (t) => {
  const root = join(t.testdir({}), 'store');
  await storeImage(root, 'localhost/bad:1', [await makeTar([{ name: 'a', content: 'a' }])]);
  const {
    records: [image],
  } = imageRecords(root);
  const bad = { ...image, layers: [{ ...image.layers[0], chainID: `sha256:${'2'.repeat(64)}` }] };
  const run = unpack(root, JSON.stringify(bad) + '\n');
  t.equal(run.code, 2);
  t.match(run.stderr, /"code":"ERR_INPUT_RECORD"/);
  t.match(run.stderr, /stdin:1: layer 0 chainID/);
});

t.test('layer records start unpacking before the image record arrives, and are consumed', async (t) => {
  const root = join(t.testdir({}), 'store');
  await storeImage(root, 'localhost/stream:1', [await makeTar([{ name: 'one', content: '1' }]), await makeTar([{ name: 'two', content: '2' }])]);
  const {
    text,
    records: [image],
  } = imageRecords(root);
  const layerRecord = (i: number) =>
    JSON.stringify({
      type: 'layer',
      v: 1,
      ...image.layers[i],
      ref: image.ref,
      index: i,
      count: 2,
      store: root,
      ...(i > 0 ? { parentChainID: image.layers[i - 1].chainID } : {}),
    }) + '\n';
  const child = spawn('node', [toolPath('layer-unpack'), '--root', root], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  const exited = new Promise<number>((r) => child.on('close', r));
  child.stdin.write(layerRecord(0));
  await poll(() => existsSync(join(root, 'layers', image.layers[0].chainID.slice(7), 'meta.json')), 'layer 0 to be unpacked from its layer record');
  t.equal(out, '', 'nothing emitted yet');
  child.stdin.write(layerRecord(1));
  await poll(() => existsSync(join(root, 'layers', image.layers[1].chainID.slice(7), 'meta.json')), 'layer 1');
  child.stdin.end(text);
  t.equal(await exited, 0);
  const records = out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.equal(records.length, 1, 'layer records consumed; one rootfs record');
  t.equal(records[0].type, 'rootfs');
  t.equal(records[0].layerDirs.length, 2);
});

t.test('concurrent unpacks of the same image are safe', async (t) => {
  const root = join(t.testdir({}), 'store');
  importToStore(`${busyboxLayout()}:v2`, root, 'localhost/bb:v2');
  const { text } = imageRecords(root);
  const runOne = async () => {
    const run = await runTool('layer-unpack', ['--root', root], { input: text });
    process.stderr.write(run.stderr);
    return { code: run.code ?? -1, out: run.stdout };
  };
  const results = await Promise.all([runOne(), runOne(), runOne()]);
  t.strictSame(
    results.map((r) => r.code),
    [0, 0, 0],
  );
  const dirs = results.map((r) => JSON.parse(r.out).layerDirs);
  t.strictSame(dirs[1], dirs[0]);
  t.strictSame(dirs[2], dirs[0]);
  t.strictSame(staging(root), []);
  t.ok(existsSync(join(dirs[0][0], 'bin', 'busybox')));
});

t.test('rootless: as uid 65534, ownership is recorded in meta.json, not applied', async (t) => {
  const dir = t.testdir({});
  const root = join(dir, 'store');
  importToStore(`${busyboxLayout()}:latest`, root, 'localhost/bb:latest');
  execFileSync('chown', ['-R', '65534:65534', dir]);
  const {
    text,
    records: [image],
  } = imageRecords(root);
  const run = unpack(root, text, [], { user: true });
  killKeeper(root); // before t.testdir removes the record of it
  t.equal(run.code, 0, run.stderr);
  const diff = run.records[0].layerDirs[0];
  t.equal(statSync(join(diff, 'home', 'app')).uid, 65534, 'files belong to the unpacking user');
  const meta = JSON.parse(readFileSync(join(root, 'layers', image.layers[0].chainID.slice(7), 'meta.json'), 'utf8'));
  t.equal(meta.rootless, true);
  t.strictSame(meta.owners['home/app'], [1000, 1000], 'the owner the layer asked for is recorded');
  t.equal(meta.opaqueXattr, 'user.overlay.opaque');
});

t.test('rootless flatten with --rootless as root gives the same tree but our ownership', async (t) => {
  const dir = t.testdir({});
  const root = join(dir, 'store');
  importToStore(`${busyboxLayout()}:latest`, root, 'localhost/bb:latest');
  const { text } = imageRecords(root);
  t.equal(unpack(root, text, ['--flatten', join(dir, 'owned')]).code, 0);
  t.equal(unpack(root, text, ['--rootless', '--flatten', join(dir, 'rootless')]).code, 0);
  t.equal(statSync(join(dir, 'owned', 'home', 'app')).uid, 1000);
  t.equal(statSync(join(dir, 'rootless', 'home', 'app')).uid, 0);
  const diffs = diffTrees(join(dir, 'owned'), join(dir, 'rootless'));
  t.strictSame(
    diffs.map((d) => d.split(':')[0]),
    ['home/app'],
    'only the ownership of home/app differs',
  );
});

t.test('zstd layers: by media type in the store and by magic bytes for raw files', async (t) => {
  const dir = t.testdir({});
  const root = join(dir, 'store');
  const tar = await makeTar([
    { name: 'z/', type: 'directory' },
    { name: 'z/file', content: 'zstd content' },
  ]);
  await storeImage(root, 'localhost/z:1', [tar], 'zstd');
  const run = unpack(root, imageRecords(root).text);
  t.equal(run.code, 0, run.stderr);
  t.equal(readFileSync(join(run.records[0].layerDirs[0], 'z', 'file'), 'utf8'), 'zstd content');
  writeFileSync(join(dir, 'layer.tar.zst'), execFileSync('zstd', ['-q', '-c'], { input: tar }));
  const raw = runToolSync('layer-unpack', ['--flatten', join(dir, 'flat'), join(dir, 'layer.tar.zst')]);
  t.equal(raw.code, 0, raw.stderr);
  t.equal(readFileSync(join(dir, 'flat', 'z', 'file'), 'utf8'), 'zstd content');
  // Without the zstd program: a clear error.
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  // This node with PATH holding only an empty directory: no zstd to find.
  const nozstd = runToolSync('layer-unpack', ['--log-format=json', '--flatten', join(dir, 'flat2'), join(dir, 'layer.tar.zst')], { env: { PATH: bin } });
  t.equal(nozstd.code, 1);
  t.match(nozstd.stderr, /"code":"ERR_LAYER_COMPRESSION"/);
  t.notOk(existsSync(join(dir, 'flat2')));
});

t.test('usage and input errors', async (t) => {
  const dir = t.testdir({});
  const cases = [
    { args: ['layer.tar'], input: '', status: 2, code: 'ERR_USAGE' },
    { args: ['--jobs', '0'], input: '', status: 2, code: 'ERR_USAGE' },
    { args: ['--max-bytes', 'lots'], input: '', status: 2, code: 'ERR_USAGE' },
    { args: [], input: '{"type":"note","v":1}\nnot json\n', status: 2, code: 'ERR_INPUT_JSON', match: /stdin:2/ },
    { args: [], input: '{"type":"image","v":1,"layers":"no"}\n', status: 2, code: 'ERR_INPUT_RECORD' },
  ];
  for (const c of cases) {
    const run = runToolSync('layer-unpack', ['--log-format=json', '--root', join(dir, 's'), ...c.args], { input: c.input });
    t.equal(run.code, c.status, `${c.args.join(' ')} ${c.input.slice(0, 20)}: exit ${c.status}`);
    t.match(run.stderr, `"code":"${c.code}"`);
    if (c.match) t.match(run.stderr, c.match);
  }
  const help = runToolSync('layer-unpack', ['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /img-fetch alpine \| layer-unpack \| ctr-spawn -- echo hi/);
  t.match(help.stdout, /layer-unpack --flatten \.\/rootfs layer1\.tar\.gz layer2\.tar/);
});

t.test('--keep-going reports a failed image and continues', async (t) => {
  const root = join(t.testdir({}), 'store');
  await storeImage(root, 'localhost/ok:1', [await makeTar([{ name: 'a', content: 'a' }])]);
  await storeImage(root, 'localhost/evil:1', [await makeTar([{ name: '../evil', content: 'x' }])]);
  const { text } = imageRecords(root);
  const run = unpack(root, text, ['--keep-going']);
  t.equal(run.code, 1);
  t.match(run.stderr, /ERR_LAYER_MALICIOUS/);
  t.equal(run.records.length, 1);
  t.equal(run.records[0].ref, 'localhost/ok:1');
  const stop = unpack(root, text);
  t.equal(stop.code, 1);
});

t.test('multi: an overlay mount of the per-layer dirs equals umoci raw unpack', { skip: hasSharedImages ? false : 'shared images absent' }, async (t) => {
  const dir = t.testdir({});
  const root = join(dir, 'store');
  const layout = `${join(SHARED_IMAGES, 'multi')}:latest`;
  importToStore(layout, root, 'localhost/multi:latest');
  execFileSync('umoci', ['raw', 'unpack', '--image', layout, join(dir, 'umoci')], { stdio: ['ignore', 'ignore', 'pipe'] });
  const run = unpack(root, imageRecords(root).text);
  t.equal(run.code, 0, run.stderr);
  const layerDirs: string[] = run.records[0].layerDirs;
  t.equal(layerDirs.length, 5);
  const mnt = join(dir, 'mnt');
  for (const d of [mnt, join(dir, 'work'), join(dir, 'up')]) mkdirSync(d);
  const lower = [...layerDirs].reverse().join(':');
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${join(dir, 'up')},workdir=${join(dir, 'work')}`, mnt]);
  try {
    t.strictSame(diffTrees(join(dir, 'umoci'), mnt), [], 'merged view identical to the flat umoci tree');
  } finally {
    execFileSync('umount', [mnt]);
  }
});

t.test('rootless: whiteouts and opaque markers as uid 65534', async (t) => {
  const dir = t.testdir({});
  const root = join(dir, 'store');
  await storeImage(root, 'localhost/rl:1', [
    await makeTar([
      { name: 'a/', type: 'directory' },
      { name: 'a/x', content: 'x' },
    ]),
    await makeTar([
      { name: 'a/', type: 'directory', mode: 0o555 },
      { name: 'a/.wh.x', content: '' },
      { name: 'a/.wh..wh..opq', content: '' },
      { name: 'a/y', content: 'y', uid: 7 },
    ]),
  ]);
  execFileSync('chown', ['-R', '65534:65534', dir]);
  const run = unpack(root, imageRecords(root).text, [], { user: true });
  killKeeper(root); // before t.testdir removes the record of it
  t.equal(run.code, 0, run.stderr);
  const upper = run.records[0].layerDirs[1];
  const wh = lstatSync(join(upper, 'a', 'x'));
  t.ok(wh.isCharacterDevice() && wh.rdev === 0, 'whiteout device created without root');
  t.equal(execFileSync('getfattr', ['-h', '--only-values', '-n', 'user.overlay.opaque', join(upper, 'a')], { encoding: 'utf8' }), 'y');
  t.equal(statSync(join(upper, 'a')).mode & 0o777, 0o555, 'read-only dir mode applied after filling it');
  const meta = JSON.parse(readFileSync(join(root, 'layers', run.records[0].layers[1].chainID.slice(7), 'meta.json'), 'utf8'));
  t.strictSame(meta.owners, { 'a/y': [7, 0] });
});
