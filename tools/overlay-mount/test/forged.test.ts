/**
 * Records on stdin may be forged (issue 7): overlay-mount mounts only layers
 * unpacked in a trusted store, and tears down only what a mount record's id
 * names. Every refusal happens before anything is mounted. And what it mounts
 * stays out of other users' reach.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxRootfs, removeStore, tempStore, writeLayerMeta } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';

const overlayMount = (args: string[], input = '') => runTool('overlay-mount', args, { input });

function mountsBelow(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p) => p && (p === dir || p.startsWith(dir + '/')));
}

/** Runs `cmd` as nobody:nogroup with no supplementary groups. */
function asNobody(cmd: string[]): { status: number | null; stderr: string } {
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', ...cmd], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

const root = tempStore('conveyor-forged-');
t.teardown(() => removeStore(root));
const rootfs = busyboxRootfs(root, 'latest');
const layer = rootfs.layerDirs[0] as string;
const hex = 'c'.repeat(64);

function layerIn(store: string, h: string, meta = true): string {
  const diff = join(store, 'layers', h, 'diff');
  mkdirSync(join(diff, 'etc'), { recursive: true });
  writeFileSync(join(diff, 'etc', 'marker'), 'x\n');
  if (meta) writeLayerMeta(store, h, `sha256:${h}`);
  return diff;
}

t.test('lower dirs outside <store>/layers/<hex>/diff, or without a valid meta.json, are refused before mounting', async (t) => {
  const noMeta = layerIn(root, 'd'.repeat(64), false);
  const wrongMeta = layerIn(root, 'e'.repeat(64), false);
  writeFileSync(join(root, 'layers', 'e'.repeat(64), 'meta.json'), JSON.stringify({ chainID: `sha256:${'f'.repeat(64)}`, diffID: `sha256:${'f'.repeat(64)}` }));
  // layers/<hex> a symlink to a look-alike tree outside the store (diff → /etc, with a meta.json).
  const outside = mkdtempSync('/tmp/conveyor-outside-');
  t.teardown(() => rmSync(outside, { recursive: true, force: true }));
  symlinkSync('/etc', join(outside, 'diff'));
  writeFileSync(join(outside, 'meta.json'), JSON.stringify({ chainID: `sha256:${hex}`, diffID: `sha256:${hex}` }));
  mkdirSync(join(root, 'layers'), { recursive: true });
  symlinkSync(outside, join(root, 'layers', hex));
  // A real layer dir whose diff is a symlink to /etc.
  const linked = '9'.repeat(64);
  mkdirSync(join(root, 'layers', linked), { recursive: true });
  symlinkSync('/etc', join(root, 'layers', linked, 'diff'));
  writeLayerMeta(root, linked, `sha256:${linked}`);
  // A meta.json that is a symlink to another layer's.
  const metaLink = '8'.repeat(64);
  mkdirSync(join(root, 'layers', metaLink, 'diff'), { recursive: true });
  symlinkSync(join(layer, '..', 'meta.json'), join(root, 'layers', metaLink, 'meta.json'));
  // Two layers of one chain, as layer-unpack records them: the top names its parent.
  const chainBottom = layerIn(root, '6'.repeat(64));
  const chainTop = layerIn(root, '7'.repeat(64), false);
  writeLayerMeta(root, '7'.repeat(64), `sha256:${'7'.repeat(64)}`, `sha256:${'6'.repeat(64)}`);
  const cases: [string, unknown[]][] = [
    ['the host /etc', ['/etc']],
    ['a layer dir plus /etc', [layer, '/etc']],
    ['climbing out with ..', [join(layer, '..', '..', '..', '..', 'etc')]],
    ['not normalised', [layer + '/']],
    ['a layer of the store without meta.json', [noMeta]],
    ['a meta.json naming another chain', [wrongMeta]],
    ['layers/<hex> a symlink out of the store', [join(root, 'layers', hex, 'diff')]],
    ['diff a symlink to /etc', [join(root, 'layers', linked, 'diff')]],
    ['meta.json a symlink', [join(root, 'layers', metaLink, 'diff')]],
    ['the layer dir itself, not its diff', [join(layer, '..')]],
    ['a number', [42]],
    ['layers of one chain upside down', [chainTop, chainBottom]],
    ['an upper layer without the one it was unpacked over', [chainTop]],
  ];
  for (const [name, layerDirs] of cases) {
    const result = await overlayMount(['--root', root, '--log-format=json'], JSON.stringify({ ...rootfs, layerDirs }) + '\n');
    t.equal(result.code, 2, `${name}: exit 2`);
    const log = JSON.parse(result.stderr.trim().split('\n').at(-1)!);
    t.equal(log.code, 'ERR_INPUT_RECORD', `${name}: ERR_INPUT_RECORD (${log.message})`);
    t.equal(result.stdout, '', `${name}: no mount record`);
  }
  t.strictSame(mountsBelow(root), [], 'nothing was mounted');
  t.strictSame(existsSync(join(root, 'containers')) ? readdirSync(join(root, 'containers')) : [], [], 'no container dir left');
  const inOrder = await overlayMount(['--root', root], JSON.stringify({ ...rootfs, layerDirs: [chainBottom, chainTop] }) + '\n');
  t.equal(inOrder.code, 0, `the same chain bottom first mounts: ${inOrder.stderr}`);
  const unmounted = await overlayMount(['--root', root, '--unmount'], inOrder.stdout);
  t.equal(unmounted.code, 0, unmounted.stderr);
});

t.test('a store named by a record must be trusted: root-owned, closed, every parent too', async (t) => {
  const base = mkdtempSync('/tmp/conveyor-untrusted-');
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  // A writable store (or one owned by another user) could have its layer dirs swapped for symlinks under our feet.
  const open = join(base, 'open');
  mkdirSync(open);
  const openLayer = layerIn(open, hex);
  chmodSync(open, 0o777);
  const theirs = join(base, 'theirs');
  mkdirSync(theirs);
  const theirLayer = layerIn(theirs, hex);
  chownSync(theirs, 65534, 65534);
  for (const [name, store, dir] of [
    ['world-writable', open, openLayer],
    ['owned by nobody', theirs, theirLayer],
  ]) {
    const result = await overlayMount(['--root', root, '--log-format=json'], JSON.stringify({ ...rootfs, store, layerDirs: [dir] }) + '\n');
    t.equal(result.code, 2, `${name}: exit 2`);
    const log = JSON.parse(result.stderr.trim().split('\n').at(-1)!);
    t.equal(log.code, 'ERR_INPUT_RECORD', `${name}: ${log.message}`);
    t.match(log.message, /unsafe store/);
    t.strictSame(mountsBelow(store), [], `${name}: nothing mounted`);
  }
  // The --root store itself: its own code.
  const result = await overlayMount(['--root', open, '--log-format=json'], JSON.stringify({ ...rootfs, store: undefined, layerDirs: [openLayer] }) + '\n');
  t.equal(JSON.parse(result.stderr.trim().split('\n').at(-1)!).code, 'ERR_STORE_UNSAFE');
});

t.test('unmount refuses mount records whose paths are not the ones their id names', async (t) => {
  const up = await overlayMount(['--root', root], JSON.stringify(rootfs) + '\n');
  t.equal(up.code, 0, up.stderr);
  const mount = JSON.parse(up.stdout);
  t.teardown(() => overlayMount(['--root', root, '--unmount', mount.id]));
  for (const field of ['containerDir', 'upper', 'work', 'target']) {
    const forged = { ...mount, [field]: '/etc' };
    const result = await overlayMount(['--unmount', '--log-format=json'], JSON.stringify(forged) + '\n');
    t.equal(result.code, 2, `${field}: refused`);
    t.equal(JSON.parse(result.stderr.trim().split('\n').at(-1)!).code, 'ERR_INPUT_RECORD');
    t.ok(mountsBelow(mount.target).length > 0, `${field}: still mounted`);
  }
  const down = await overlayMount(['--unmount'], up.stdout);
  t.equal(down.code, 0, down.stderr);
  t.strictSame(mountsBelow(mount.target), []);
});

t.test('an open store is closed on first use with a warning; others reach neither layers nor containers', async (t) => {
  // A store as an older conveyor (or skopeo) left it: 0755, in a directory everyone may traverse.
  const base = mkdtempSync('/tmp/conveyor-open-');
  chmodSync(base, 0o755);
  const store = join(base, 'store');
  t.teardown(() => removeStore(store));
  mkdirSync(store);
  chmodSync(store, 0o755);
  const record = busyboxRootfs(store, 'latest');
  chmodSync(join(store, 'layers'), 0o755);
  const busybox = join(record.layerDirs[0], 'bin', 'busybox');
  t.equal(asNobody(['test', '-r', busybox]).status, 0, "before: nobody can read the layer's files (the hole)");

  const up = await overlayMount([], JSON.stringify(record) + '\n');
  t.equal(up.code, 0, up.stderr);
  const mount = JSON.parse(up.stdout);
  t.teardown(() => overlayMount(['--unmount'], up.stdout));
  t.match(up.stderr, new RegExp(`warning: store ${store} was mode 0755, open to other users; changed to 0700`));
  t.equal(statSync(store).mode & 0o7777, 0o700, 'store root is 0700');
  t.equal(statSync(join(store, 'containers')).mode & 0o7777, 0o700, 'containers/ is 0700');
  t.equal(statSync(mount.containerDir).mode & 0o7777, 0o700, 'containers/<id> is 0700');
  t.equal(statSync(mount.upper).mode & 0o7777, 0o755, "upper (the container's /) stays usable inside");
  t.equal(asNobody(['test', '-r', busybox]).status, 1, "nobody cannot reach an unpacked layer's files");
  t.equal(asNobody(['ls', mount.target]).status, 2, "nobody cannot list the container's merged dir");
  t.equal(asNobody(['test', '-r', join(mount.target, 'bin', 'busybox')]).status, 1, 'nobody cannot reach files in merged');
  t.equal(asNobody(['test', '-e', join(mount.upper, '.')]).status, 1, 'nobody cannot reach upper');

  const again = await overlayMount(['--unmount'], up.stdout);
  t.equal(again.code, 0);
  t.notMatch(again.stderr, /warning/, 'a closed store gives no warning');
});

t.test('container dirs are created with their modes whatever the umask', async (t) => {
  const { mountOverlay, removeContainer } = await import('@conveyor/lib-common/overlay/mount');
  const { Store } = await import('@conveyor/lib-common/store');
  const store = new Store(root);
  const old = process.umask(0o077);
  let paths;
  try {
    paths = await mountOverlay(store, [layer]);
  } finally {
    process.umask(old);
  }
  t.teardown(() => removeContainer(store, paths.id));
  t.equal(statSync(paths.upper).mode & 0o7777, 0o755, 'upper 0755 under umask 077');
  t.equal(statSync(paths.containerDir).mode & 0o7777, 0o700);
});

t.test('a deeply nested record is ERR_INPUT_JSON (exit 2), not an internal error', async (t) => {
  const deep = `{"type":"x","a":${'['.repeat(100000)}${']'.repeat(100000)}}`;
  const result = await overlayMount(['--root', root, '--log-format=json'], deep + '\n');
  t.equal(result.code, 2);
  t.equal(JSON.parse(result.stderr.trim().split('\n').at(-1)!).code, 'ERR_INPUT_JSON');
});
