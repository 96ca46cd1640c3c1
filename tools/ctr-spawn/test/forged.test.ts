/**
 * Forged records (issue 7): ctr-spawn runs only layers unpacked in a trusted
 * store and mounts that overlay-mount made for the id they carry. Each
 * refusal comes before anything is mounted or run.
 */
import t from 'tap';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxRootfs, registerFlattened, removeStore, tempStore, writeLayerMeta } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';
import { containerDirs, ctrSpawn, mountsUnder } from './helpers.js';

const root = tempStore('conveyor-ctrforge-');
t.teardown(() => removeStore(root));
const rootfs = busyboxRootfs(root, 'latest');

function lastLog(stderr: string): Record<string, any> {
  return JSON.parse(stderr.trim().split('\n').at(-1)!);
}

t.test("a rootfs record with the host's /etc as a layer is refused, nothing runs", async (t) => {
  const marker = join(mkdtempSync('/tmp/conveyor-ran-'), 'ran');
  t.teardown(() => rmSync(join(marker, '..'), { recursive: true, force: true }));
  for (const layerDirs of [['/etc', ...rootfs.layerDirs], [...rootfs.layerDirs, '/etc'], ['/']]) {
    const r = await ctrSpawn({ ...rootfs, layerDirs }, [
      '--log-format=json',
      '-v',
      `${join(marker, '..')}:/out`,
      '--',
      'sh',
      '-c',
      'cat /passwd /hostname; touch /out/ran',
    ]);
    t.equal(lastLog(r.stderr).code, 'ERR_INPUT_RECORD', JSON.stringify(layerDirs));
    t.equal(r.stdout, '', "the host's files are not shown");
    t.not(r.code, 0);
  }
  t.notOk(existsSync(marker), 'the container never ran');
  t.strictSame(mountsUnder(root), [], 'nothing mounted');
  t.strictSame(containerDirs(root), [], 'no container dir');
});

t.test('a flattened dir is run only when layer-unpack registered it in the store', async (t) => {
  const marker = join(mkdtempSync('/tmp/conveyor-ran-'), 'ran');
  t.teardown(() => rmSync(join(marker, '..'), { recursive: true, force: true }));
  const { layerDirs: _l, ...image } = rootfs;
  // A hand-made tree at a path the register never saw, the host's own dirs, and a
  // registered path whose directory was swapped for another (a new inode).
  const unregistered = mkdtempSync('/tmp/conveyor-flat-');
  t.teardown(() => rmSync(unregistered, { recursive: true, force: true }));
  mkdirSync(join(unregistered, 'bin'));
  const swapped = mkdtempSync('/tmp/conveyor-flat-');
  t.teardown(() => rmSync(swapped, { recursive: true, force: true }));
  registerFlattened(root, swapped);
  rmSync(swapped, { recursive: true });
  mkdirSync(swapped);
  for (const dir of ['/', '/etc', unregistered, swapped]) {
    const r = await ctrSpawn({ ...image, dir }, [
      '--log-format=json',
      '-v',
      `${join(marker, '..')}:/out`,
      '--',
      'sh',
      '-c',
      'cat /passwd /hostname; touch /out/ran',
    ]);
    t.equal(lastLog(r.stderr).code, 'ERR_INPUT_RECORD', dir);
    t.match(lastLog(r.stderr).message, /not flattened by layer-unpack/, dir);
    t.equal(r.stdout, '', 'nothing from the host is shown');
  }
  t.notOk(existsSync(marker), 'the container never ran');
  t.strictSame(mountsUnder(root), [], 'nothing mounted');
  const flat = busyboxRootfs(root, 'latest', { flatten: true });
  const ok = await ctrSpawn(flat, ['--', 'echo', 'registered']);
  t.equal(ok.stdout, 'registered\n', 'a registered flattened tree runs');
});

t.test('a record naming a store others can write is refused', async (t) => {
  const base = mkdtempSync('/tmp/conveyor-ctrforge-open-');
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const store = join(base, 'store');
  const hex = 'a'.repeat(64);
  mkdirSync(join(store, 'layers', hex, 'diff', 'bin'), { recursive: true });
  writeLayerMeta(store, hex, `sha256:${hex}`);
  chmodSync(store, 0o777);
  const r = await ctrSpawn({ ...rootfs, store, layerDirs: [join(store, 'layers', hex, 'diff')] }, ['--log-format=json', '--', 'true']);
  t.equal(lastLog(r.stderr).code, 'ERR_INPUT_RECORD');
  t.match(lastLog(r.stderr).message, /unsafe store/);
  t.strictSame(mountsUnder(store), []);
});

t.test("a mount record whose paths are not its id's is refused", async (t) => {
  const up = await runTool('overlay-mount', ['--root', root], { input: JSON.stringify(rootfs) + '\n' });
  t.equal(up.code, 0, up.stderr);
  const mount = JSON.parse(up.stdout);
  t.teardown(() => runTool('overlay-mount', ['--unmount'], { input: up.stdout }));
  const other = mkdtempSync('/tmp/conveyor-other-');
  t.teardown(() => rmSync(other, { recursive: true, force: true }));
  for (const [field, value] of [
    ['target', '/'],
    ['containerDir', other],
    ['upper', join(other, 'upper')],
    ['work', '/tmp'],
    ['id', '../../x'],
  ]) {
    const r = await ctrSpawn({ ...mount, [field]: value }, ['--log-format=json', '--', 'true']);
    t.equal(lastLog(r.stderr).code, 'ERR_INPUT_RECORD', `${field} forged: ${lastLog(r.stderr).message}`);
  }
  const ok = await ctrSpawn(mount, ['--', 'true']);
  t.equal(ok.code, 0, ok.stderr);
});
