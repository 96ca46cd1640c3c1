/**
 * A foreground run's clean-up that does not wait for the directory's removal (issue 17): the container
 * directory of a run that waited on a pipe for its record is unmounted and renamed into the store's
 * trash (tmp/trash-<id>), and removed by a later run (sweepTrash) while that one waits on its pipe; a
 * run that read its record from a file removes its own directory, then sweeps what trash is left.
 * The name is released as before; ctr-ls, ctr-rm and img-fsck
 * never see trash as a container; a trash left by a crash is swept; a sweep never follows a symlink
 * nor removes what is mounted below a trash entry.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Store } from '@conveyor/lib-common/store';
import { sweepTrash } from '@conveyor/lib-common/overlay/mount';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool, toolPath } from '../../../test/helpers/tools.js';
import { containerDirs, ctrSpawn, mountsUnder } from './helpers.js';

const root = tempStore('conveyor-ctrbin-');
t.teardown(() => removeStore(root));
const rootfs = busyboxRootfs(root, 'latest');
const tmp = join(root, 'tmp');
const trash = () => (existsSync(tmp) ? readdirSync(tmp).filter((name) => name.startsWith('trash-')) : []);

t.test('a run leaves its directory in the trash, the next run sweeps it; names released, no tool sees it', async (t) => {
  const first = await ctrSpawn(rootfs, ['--root', root, '--net', 'none', '--name', 'trashy', '--', 'sh', '-c', 'echo one > /written']);
  t.equal(first.code, 0, first.stderr);
  t.strictSame(containerDirs(root), [], 'no container directory');
  const [left, ...more] = trash();
  t.match(left, /^trash-[0-9a-f]{64}$/, "the run's directory is in the trash");
  t.strictSame(more, []);
  t.equal(readFileSync(join(tmp, left, 'upper', 'written'), 'utf8'), 'one\n', 'the whole directory, renamed');
  t.strictSame(mountsUnder(root), [], 'nothing mounted');
  t.notOk(existsSync(join(root, 'names', 'trashy')), 'the name is released');

  const listed = await runTool('ctr-ls', ['--root', root, '-a']);
  t.equal(listed.code, 0, listed.stderr);
  t.strictSame(listed.records, [], 'ctr-ls lists no container');
  const removed = await runTool('ctr-rm', ['--root', root, left.slice('trash-'.length)]);
  t.not(removed.code, 0, 'ctr-rm knows no such container');
  t.ok(existsSync(join(tmp, left)), 'and leaves the trash alone');
  const fsck = await runTool('img-fsck', ['--root', root]);
  t.match(fsck.records, [{ type: 'fsck', problems: 0, checked: { containers: 0 } }], 'img-fsck counts no container, finds no problem');
  t.notMatch(fsck.stdout + fsck.stderr, /trash-/, 'and says nothing about the trash');

  // A crash between the rename and the sweep (or a sweep that never came) leaves more: the next run sweeps it all.
  const crashed = join(tmp, `trash-${'c'.repeat(64)}`);
  mkdirSync(join(crashed, 'upper', 'deep', 'er'), { recursive: true });
  writeFileSync(join(crashed, 'upper', 'deep', 'er', 'file'), 'x');
  const second = await ctrSpawn(rootfs, ['--root', root, '--net', 'none', '--name', 'trashy', '--', 'true']);
  t.equal(second.code, 0, `the name is free again: ${second.stderr}`);
  const after = trash();
  t.equal(after.length, 1, "only the second run's own directory is left");
  t.not(after[0], left, "the first run's is swept");
  t.notOk(existsSync(crashed), "a crashed run's trash is swept");
  t.strictSame(containerDirs(root), []);

  // stdin a file (read without a stream): its own directory removed in place, the trash swept after its clean-up.
  const recordFile = join(root, '..', 'record.json');
  writeFileSync(recordFile, `${JSON.stringify(rootfs)}\n`);
  const fd = openSync(recordFile, 'r');
  const third = spawnSync(process.execPath, [toolPath('ctr-spawn'), '--root', root, '--net', 'none', '--', 'true'], {
    stdio: [fd, 'pipe', 'pipe'],
    encoding: 'utf8',
  });
  closeSync(fd);
  t.equal(third.status, 0, third.stderr);
  t.strictSame(trash(), [], "the second run's trash is swept, and the third's directory never went there");
  t.strictSame(containerDirs(root), [], 'nor stayed in containers/');
});

t.test('--keep keeps the directory where it is: nothing goes to the trash', async (t) => {
  const before = trash();
  const r = await ctrSpawn(rootfs, ['--root', root, '--net', 'none', '--keep', '--', 'true']);
  t.equal(r.code, 0, r.stderr);
  const kept = containerDirs(root);
  t.equal(kept.length, 1, 'the container directory stays');
  t.ok(
    trash().every((name) => before.includes(name) || !name.endsWith(kept[0])),
    'not trashed',
  );
  const removed = await runTool('ctr-rm', ['--root', root, kept[0]]);
  t.equal(removed.code, 0, removed.stderr);
  t.strictSame(containerDirs(root), []);
});

t.test('sweepTrash: only real trash directories, never through a symlink, never below a mount', async (t) => {
  const store = new Store(root);
  const victim = join(root, 'victim');
  mkdirSync(victim, { recursive: true });
  writeFileSync(join(victim, 'keep-me'), 'precious');
  t.teardown(() => rmSync(victim, { recursive: true, force: true }));
  const linked = join(tmp, `trash-${'a'.repeat(64)}`);
  symlinkSync(victim, linked);
  const mounted = join(tmp, `trash-${'b'.repeat(64)}`);
  mkdirSync(join(mounted, 'merged'), { recursive: true });
  execFileSync('mount', ['--bind', victim, join(mounted, 'merged')]);
  t.teardown(() => {
    execFileSync('umount', [join(mounted, 'merged')], { stdio: 'ignore' });
    rmSync(mounted, { recursive: true, force: true });
  });
  const other = join(tmp, 'not-trash');
  mkdirSync(other, { recursive: true });
  const plain = join(tmp, `trash-${'d'.repeat(64)}`);
  mkdirSync(join(plain, 'work', 'work'), { recursive: true });

  const left = await sweepTrash(store);
  t.strictSame(left.sort(), [linked, mounted].sort(), 'what it would not remove');
  t.notOk(existsSync(plain), 'a plain trash directory is removed');
  t.equal(readFileSync(join(victim, 'keep-me'), 'utf8'), 'precious', 'nothing removed through the symlink or in the mount');
  t.ok(existsSync(join(mounted, 'merged', 'keep-me')), 'the mounted one stays as it was');
  t.ok(existsSync(other), 'a name that is not trash is left alone');
  rmSync(linked);
  rmSync(other, { recursive: true });
  t.strictSame(await sweepTrash(new Store(join(root, 'no-such-store'))), [], 'no tmp/: nothing to do');
});
