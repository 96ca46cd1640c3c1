import t from 'tap';
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { addLayers, busyboxRootfs, removeStore, tempStore, writeLayerMeta } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';

const overlayMount = (args: string[], input = '') => runTool('overlay-mount', args, { input });

function mounted(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === path);
}

function lines(text: string): Record<string, any>[] {
  return text
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

t.test('mounts a rootfs record, passes other records through, unmounts from the record', async (t) => {
  const root = tempStore();
  t.teardown(() => removeStore(root));
  const rootfs = busyboxRootfs(root, 'v2');
  const other = { type: 'note', v: 1, text: 'untouched' };
  const result = await overlayMount(['--root', '/nonexistent'], `${JSON.stringify(other)}\n${JSON.stringify(rootfs)}\n`);
  t.equal(result.code, 0, result.stderr);
  const [passed, mount] = lines(result.stdout);
  t.strictSame(passed, other, 'unknown record passes through unchanged');
  t.equal(mount.type, 'mount');
  t.equal(mount.v, 1);
  t.match(mount.id, /^[a-f0-9]{64}$/);
  t.equal(mount.containerDir, join(root, 'containers', mount.id), "container dir in the record's store");
  t.equal(mount.target, join(mount.containerDir, 'merged'));
  t.equal(mount.upper, join(mount.containerDir, 'upper'));
  t.equal(mount.work, join(mount.containerDir, 'work'));
  t.equal(mount.ref, rootfs.ref, 'image fields are kept');
  t.strictSame(mount.layerDirs, rootfs.layerDirs);
  t.ok(mounted(mount.target), 'merged is a mount point');
  t.equal(readFileSync(join(mount.target, 'hello.txt'), 'utf8'), 'hello from v2\n', 'the layer content is visible');

  const down = await overlayMount(['--root', '/nonexistent', '--unmount'], `${JSON.stringify(mount)}\n${JSON.stringify(other)}\n`);
  t.equal(down.code, 0, down.stderr);
  t.strictSame(lines(down.stdout), [other], 'mount records are consumed, others pass through');
  t.notOk(mounted(mount.target), 'unmounted');
  t.notOk(existsSync(mount.containerDir), 'container dir removed');

  const again = await overlayMount(['--root', root, '--unmount', mount.id]);
  t.equal(again.code, 0, 'unmounting twice is not an error');
});

t.test('writes go to the upper dir, never to the layer', async (t) => {
  const root = tempStore();
  t.teardown(() => removeStore(root));
  const rootfs = busyboxRootfs(root, 'latest');
  const result = await overlayMount(['--root', root], JSON.stringify(rootfs) + '\n');
  t.equal(result.code, 0, result.stderr);
  const [mount] = lines(result.stdout);
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(mount.target, 'new.txt'), 'x');
  t.ok(existsSync(join(mount.upper, 'new.txt')), 'in upper');
  t.notOk(existsSync(join(rootfs.layerDirs[0], 'new.txt')), 'not in the lower layer');
  const down = await overlayMount(['--root', root, '--unmount', mount.id]);
  t.equal(down.code, 0, down.stderr);
  t.notOk(existsSync(mount.containerDir));
});

t.test('a flattened rootfs (dir) is mounted as the single lower layer', async (t) => {
  const root = tempStore();
  t.teardown(() => removeStore(root));
  const rootfs = busyboxRootfs(root, 'v2', { flatten: true });
  const result = await overlayMount(['--root', root], JSON.stringify(rootfs) + '\n');
  t.equal(result.code, 0, result.stderr);
  const [mount] = lines(result.stdout);
  t.equal(mount.dir, rootfs.dir);
  t.ok(existsSync(join(mount.target, 'bin', 'busybox')));
  t.equal((await overlayMount(['--root', root, '--unmount', mount.id])).code, 0);
});

t.test('60 layers in a deep store mount through short links', async (t) => {
  const root = tempStore('conveyor-deep-', 200);
  t.teardown(() => removeStore(root));
  const rootfs = addLayers(root, busyboxRootfs(root, 'latest'), 60);
  const direct = rootfs.layerDirs.join(':').length;
  t.ok(direct > 4096, `absolute lowerdir would be ${direct} bytes, over one page`);
  const result = await overlayMount(['--root', root], JSON.stringify(rootfs) + '\n');
  t.equal(result.code, 0, result.stderr);
  const [mount] = lines(result.stdout);
  t.ok(mounted(mount.target));
  t.strictSame(
    readdirSync(join(mount.target, 'layers')).sort((a, b) => Number(a) - Number(b)),
    Array.from({ length: 60 }, (_, i) => String(i)),
    'every layer is visible',
  );
  t.ok(existsSync(join(mount.target, 'bin', 'sh')), 'the bottom layer is visible');
  const links = readdirSync(join(root, 'l'));
  t.equal(links.length, 61, 'one short link per layer');
  t.ok(links.every((l) => /^[a-f0-9]{12}$/.test(l)));
  t.ok(rootfs.layerDirs.includes(join(root, 'l', readlinkSync(join(root, 'l', links[0])))), 'links point at layer dirs (relative in the store)');
  t.equal((await overlayMount(['--root', root, '--unmount', mount.id])).code, 0);
  t.notOk(mounted(mount.target));
});

t.test('failures are clear', async (t) => {
  const root = tempStore();
  t.teardown(() => removeStore(root));
  // [name, input line, exit code, error code, message]
  const cases: [string, string, number, string, RegExp][] = [
    [
      'missing layer dir',
      JSON.stringify({ type: 'rootfs', v: 1, store: root, layerDirs: [join(root, 'layers', 'a'.repeat(64), 'diff')] }),
      1,
      'ERR_MOUNT_FAILED',
      /does not exist/,
    ],
    ['no layers', JSON.stringify({ type: 'rootfs', v: 1, store: root }), 2, 'ERR_INPUT_RECORD', /neither layerDirs nor dir/],
    [
      'relative layer dir',
      JSON.stringify({ type: 'rootfs', v: 1, store: root, layerDirs: ['layers/x'] }),
      2,
      'ERR_INPUT_RECORD',
      /is not .*layers\/<64 hex>\/diff/,
    ],
    ['bad json', '{"type": rootfs}', 2, 'ERR_INPUT_JSON', /^stdin:1: /],
  ];
  for (const [name, input, exit, code, message] of cases) {
    const result = await overlayMount(['--root', root, '--log-format=json'], input + '\n');
    t.equal(result.code, exit, `${name}: exit ${exit}`);
    const log = JSON.parse(result.stderr.trim().split('\n').at(-1)!);
    t.equal(log.code, code, `${name}: ${code}`);
    t.match(log.message, message, `${name}: message`);
  }
  t.strictSame(existsSync(join(root, 'containers')) ? readdirSync(join(root, 'containers')) : [], [], 'no container dir left behind');
  const bad = await overlayMount(['--root', root, '--unmount', '../xyz']);
  t.equal(bad.code, 2, 'neither an id nor a name: usage');
  const unknown = await overlayMount(['--root', root, '--unmount', 'xyz']);
  t.equal(unknown.code, 1, 'a name no container has');
  t.match(unknown.stderr, /no such container: xyz/);
});

t.test("the kernel's reason is reported when mount(2) fails", async (t) => {
  const root = tempStore();
  t.teardown(() => removeStore(root));
  const rootfs = busyboxRootfs(root, 'latest');
  // A store inside a live overlay: overlayfs refuses an overlay as upper dir.
  const result = await overlayMount(['--root', root], JSON.stringify(rootfs) + '\n');
  t.equal(result.code, 0, result.stderr);
  const [mount] = lines(result.stdout);
  // The nested store has a layer of its own: lower dirs must be in the record's store.
  const nestedStore = join(mount.target, 'nested');
  const hex = 'b'.repeat(64);
  const { mkdirSync } = await import('node:fs');
  mkdirSync(join(nestedStore, 'layers', hex, 'diff'), { recursive: true, mode: 0o700 });
  writeLayerMeta(nestedStore, hex, `sha256:${hex}`);
  const nested = { ...rootfs, store: nestedStore, layerDirs: [join(nestedStore, 'layers', hex, 'diff')] };
  const failed = await overlayMount(['--log-format=json'], JSON.stringify(nested) + '\n');
  t.equal(failed.code, 1);
  const log = JSON.parse(failed.stderr.trim().split('\n').at(-1)!);
  t.equal(log.code, 'ERR_MOUNT_FAILED');
  t.match(log.message, /^overlay mount on .* failed: overlay(fs)?: .*not supported as upperdir/, "the kernel's own words");
  t.ok(log.hint, 'with a hint');
  t.notOk(existsSync(join(nested.store, 'containers')) && readdirSync(join(nested.store, 'containers')).length > 0, 'failed mount leaves no container dir');
  t.equal((await overlayMount(['--root', root, '--unmount', mount.id])).code, 0);
});
