/**
 * The overlay looked at without mounting it (overlay/layered.ts), held to the
 * kernel: layers with whiteouts, an opaque directory, file<->directory type
 * changes and symlinks (hand-made, and the shared `multi` image unpacked by
 * layer-unpack) are mounted for real, and every path of the merged tree and
 * of every layer must look the same through LayeredRoot (type, mode, size,
 * link target, absent where a whiteout or an opaque directory hides it).
 * Also: the runtime's mount of a root (runtimeRootMount: the options, volatile
 * by kernel release, none when the plan needs short links) and the path
 * lookups of container/rootfs.ts over a LayeredRoot.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getfattrOpaque, isWhiteout, LayeredRoot, opaqueInDump } from '@conveyor/lib-common/overlay/layered';
import { containerPaths, MOUNT_OPTIONS_LIMIT, runtimeRootMount, volatileSupported } from '@conveyor/lib-common/overlay/mount';
import { findCommand, readRootFile, resolveScoped } from '@conveyor/lib-common/container/rootfs';
import { resolveUser } from '@conveyor/lib-common/container/user';
import { Store } from '@conveyor/lib-common/store';
import { hasSharedImages, importToStore, SHARED_IMAGES } from '../../test/helpers/fixtures.js';
import { imageRecord, removeStore, tempStore } from '../../test/helpers/rootfs.js';
import { runTool } from '../../test/helpers/tools.js';

const base = mkdtempSync(join(tmpdir(), 'conveyor-layered-'));
t.teardown(() => {
  try {
    execFileSync('umount', [join(base, 'merged')], { stdio: 'ignore' });
  } catch {
    // not mounted
  }
  rmSync(base, { recursive: true, force: true });
});

/** Every path under `dir` (relative, '' excluded), directories first. */
function walk(dir: string, rel = ''): string[] {
  const found: string[] = [];
  for (const name of readdirSync(join(dir, rel))) {
    const path = rel ? `${rel}/${name}` : name;
    found.push(path);
    if (lstatSync(join(dir, path)).isDirectory()) found.push(...walk(dir, path));
  }
  return found;
}

function describe(st: { isDirectory(): boolean; isFile(): boolean; isSymbolicLink(): boolean; mode: number; size: number } | undefined): string {
  if (!st) return 'absent';
  const kind = st.isDirectory() ? 'dir' : st.isFile() ? `file ${st.size}` : st.isSymbolicLink() ? 'link' : 'other';
  return `${kind} ${(st.mode & 0o7777).toString(8)}`;
}

/** Mounts `layers` (top first) on `merged` for real, and compares every path of it and of the layers with the LayeredRoot. */
async function compareWithKernel(t: Tap.Test, layers: string[], work: string) {
  const merged = join(work, 'merged');
  for (const dir of ['upper', 'work', 'merged', 'empty']) mkdirSync(join(work, dir), { recursive: true });
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${layers.join(':')},upperdir=${work}/upper,workdir=${work}/work`, merged]);
  try {
    const view = new LayeredRoot(layers, join(work, 'empty'));
    const visible = walk(merged);
    const everywhere = new Set([...visible, ...layers.flatMap((layer) => walk(layer))]);
    const mismatches: string[] = [];
    for (const path of everywhere) {
      let kernel;
      try {
        kernel = lstatSync(join(merged, path));
      } catch {
        kernel = undefined;
      }
      const ours = await view.lstat(path);
      if (describe(kernel) !== describe(ours)) mismatches.push(`${path}: kernel ${describe(kernel)}, layered ${describe(ours)}`);
      else if (kernel?.isSymbolicLink() && readlinkSync(join(merged, path)) !== (await view.readlink(path))) mismatches.push(`${path}: link target`);
      else if (kernel?.isFile() && kernel.size < 65536 && !readFileSync(join(merged, path)).equals(readFileSync(view.hostPath(path))))
        mismatches.push(`${path}: content`);
    }
    t.strictSame(mismatches, [], `${everywhere.size} paths (${visible.length} visible) look as the kernel shows them`);
    return { view, visible };
  } finally {
    execFileSync('umount', [merged]);
  }
}

t.test('hand-made layers: whiteouts, an opaque dir, type changes, links', async (t) => {
  const layer = (n: number) => join(base, `l${n}`);
  const files: [number, string, string][] = [
    [0, 'etc/passwd', 'root:x:0:0:zero:/root:/bin/sh\nu:x:7:7::/home/u:/bin/sh\n'],
    [0, 'etc/group', 'root:x:0:\nwheel:x:10:root\n'],
    [0, 'a/file0', 'zero'],
    [0, 'd/x', 'x'],
    [0, 'f', 'a file below'],
    [0, 'gone/y', 'y'],
    [0, 'op/lower', 'hidden by the opaque dir above'],
    [0, 't/child', 'under a dir that becomes a file'],
    [0, 'bin/tool', '#!/bin/sh\n'],
    [1, 'etc/passwd', 'root:x:0:0:one:/root1:/bin/sh\n'],
    [1, 'op/upper', 'kept'],
    [1, 't', 'now a file'],
    [1, 'f/in', 'a dir now'],
    [1, 'd/y', 'y'],
    [2, 'new', 'top'],
  ];
  for (const [n, path, text] of files) {
    mkdirSync(join(layer(n), path, '..'), { recursive: true });
    writeFileSync(join(layer(n), path), text);
  }
  execFileSync('chmod', ['755', join(layer(0), 'bin/tool')]);
  mkdirSync(join(layer(2), 'a'), { recursive: true });
  execFileSync('mknod', [join(layer(1), 'gone'), 'c', '0', '0']);
  execFileSync('mknod', [join(layer(2), 'a', 'file0'), 'c', '0', '0']);
  execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(layer(1), 'op')]);
  symlinkSync('/etc', join(layer(0), 'link'));
  symlinkSync('../../etc/passwd', join(layer(1), 'd', 'rel'));
  const layers = [layer(2), layer(1), layer(0)];
  const { view } = await compareWithKernel(t, layers, join(base, 'mnt'));

  t.equal(await readRootFile(view, '/link/passwd'), 'root:x:0:0:one:/root1:/bin/sh\n', 'a symlink followed inside the view, the top copy read');
  t.equal(await readRootFile(view, '/d/rel'), 'root:x:0:0:one:/root1:/bin/sh\n', 'a relative link in a merged dir');
  t.equal(await readRootFile(view, '/op/lower'), undefined, 'hidden by the opaque dir');
  t.equal(await readRootFile(view, '/gone/y'), undefined, 'hidden by a whiteout');
  t.equal(await readRootFile(view, '/t/child'), undefined, 'hidden by a file above its dir');
  t.equal((await resolveScoped(view, '/../../link/../etc/./passwd', { code: 'ERR_SPAWN_FAILED' })).relative, 'etc/passwd', '.. stops at the root');
  t.strictSame(await findCommand(view, 'tool', '/bin', '/'), { status: 'found', path: '/bin/tool' });
  t.strictSame(await findCommand(view, 'gone', '/', '/'), { status: 'not-found', path: 'gone' }, 'a whiteout is no command');
  t.match(await findCommand(view, '/etc/passwd', undefined, '/'), { status: 'not-executable' });
  t.match(await resolveUser(view, ''), { uid: 0, gid: 0, home: '/root1', additionalGids: [] }, 'the top passwd; its group file from below');
  await t.rejects(resolveUser(view, 'u'), { code: 'ERR_USER_NOT_FOUND' }, 'u is only in the passwd the top one replaced');
});

t.test('one layer: no getfattr; many: one per directory met in more than one layer', async (t) => {
  const asked: string[][] = [];
  const probe = async (dirs: string[]) => {
    asked.push(dirs);
    return getfattrOpaque(dirs);
  };
  const one = new LayeredRoot([join(base, 'l0')], join(base, 'mnt', 'empty'), probe);
  t.ok(await readRootFile(one, '/etc/passwd'));
  t.ok(await one.lstat('d/x'));
  t.strictSame(asked, [], 'a one-layer view never asks');
  const three = new LayeredRoot([join(base, 'l2'), join(base, 'l1'), join(base, 'l0')], join(base, 'mnt', 'empty'), probe);
  await readRootFile(three, '/etc/passwd');
  await readRootFile(three, '/etc/group');
  t.strictSame(asked, [[join(base, 'l2'), join(base, 'l1')], [join(base, 'l1', 'etc')]], 'the root (in three layers) and etc (in two) once each');
});

t.test('pure: whiteouts, getfattr dumps', async (t) => {
  t.ok(isWhiteout(lstatSync(join(base, 'l1', 'gone'))));
  t.notOk(isWhiteout(lstatSync('/dev/null')), 'a character device of another number');
  const dump = '# file: /l/a\\040b\ntrusted.overlay.opaque="y"\n\n# file: /l/c\ntrusted.overlay.opaque="n"\n\n# file: /l/d\nuser.overlay.opaque="y"\n';
  t.strictSame([...opaqueInDump(dump)], ['/l/a b', '/l/d']);
});

t.test('runtimeRootMount: the options of a mount the runtime makes, or none', async (t) => {
  const store = new Store('/s');
  const paths = containerPaths(store, 'c'.repeat(64));
  const layers = ['/s/layers/a/diff', '/s/layers/b/diff'];
  const direct = ['lowerdir=/s/layers/b/diff:/s/layers/a/diff', `upperdir=${paths.upper}`, `workdir=${paths.work}`];
  const cases: [string, string[], boolean, string, string[] | undefined][] = [
    ['two layers, top first', layers, false, '6.1.0', direct],
    ['volatile on 5.10', layers, true, '5.10.0-28-amd64', [...direct, 'volatile']],
    ['volatile on 6.x', layers, true, '6.18.44-fc', [...direct, 'volatile']],
    ['no volatile before 5.10', layers, true, '5.4.0', direct],
    ['a comma in a path: short links, mounted here', ['/s/layers/a,upperdir=/etc/diff'], false, '6.1.0', undefined],
    ['over a page: short links, mounted here', Array.from({ length: 100 }, (_, i) => `/s/layers/${'x'.repeat(40)}${i}/diff`), false, '6.1.0', undefined],
  ];
  for (const [what, lowerDirs, volatile, release, expected] of cases) {
    t.strictSame(runtimeRootMount(store, lowerDirs, paths, { volatile, release })?.options, expected, what);
  }
  t.match(runtimeRootMount(store, layers, paths, { volatile: false, release: '6.1' }), { destination: '/', type: 'overlay', source: 'overlay' });
  t.ok(direct.join(',').length < MOUNT_OPTIONS_LIMIT);
  const releases: [string, boolean][] = [
    ['5.9.16', false],
    ['5.10.0', true],
    ['4.19.0', false],
    ['6.0', true],
    ['10.1.0', true],
    ['garbage', false],
  ];
  for (const [release, expected] of releases) t.equal(volatileSupported(release), expected, release);
});

t.test('the multi image as layer-unpack leaves it: the same tree as the kernel shows', { skip: !hasSharedImages && 'no shared images' }, async (t) => {
  const root = tempStore('conveyor-layered-multi-');
  t.teardown(() => removeStore(root));
  importToStore(`${join(SHARED_IMAGES, 'multi')}:latest`, root, 'docker.io/library/multi:latest');
  const image = imageRecord(root, 'docker.io/library/multi:latest');
  const unpacked = await runTool('layer-unpack', ['--root', root], { input: JSON.stringify({ type: 'image', ...image }) + '\n' });
  t.equal(unpacked.code, 0, unpacked.stderr);
  const record = unpacked.records.find((r) => r.type === 'rootfs');
  const layers = [...((record?.layerDirs as string[] | undefined) ?? [])].reverse();
  t.equal(layers.length, 5);
  const started = Date.now();
  const { view } = await compareWithKernel(t, layers, join(base, 'multi'));
  t.comment(`compared in ${Date.now() - started} ms`);
  t.match(await resolveUser(view, 'root'), { uid: 0, gid: 0, home: '/root' });
  t.strictSame(await findCommand(view, 'sh', '/usr/local/bin:/usr/bin:/bin', '/'), { status: 'found', path: '/usr/bin/sh' });
});
