/**
 * The clean-up of a foreground run (overlay/mount.ts, issue 17):
 * removeSmallTree removes a container-like tree whole (nested and mode-000
 * directories, a symlink as a link: what it points to stays, no renamed
 * directory left), leaves a tree larger than its limit untouched for
 * removeTree, and takes a missing directory as removed; mountsUnderSync reads the mount table as mountsUnder
 * does; removeContainer with `sync` removes an unmounted container directory
 * and refuses one with something mounted below it, as without.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { containerPaths, mountsUnder, mountsUnderSync, removeContainer, removeSmallTree } from '@conveyor/lib-common/overlay/mount';
import { Store } from '@conveyor/lib-common/store';

const base = mkdtempSync(join(tmpdir(), 'conveyor-rmsync-'));
t.teardown(() => rmSync(base, { recursive: true, force: true }));

/** A container directory's shape after a run: bundle files, the upper dir's name files, overlayfs's volatile work dir. */
function containerLike(dir: string): void {
  for (const sub of ['upper/etc', 'work/work/incompat/volatile', 'merged']) mkdirSync(join(dir, sub), { recursive: true });
  for (const file of ['config.json', 'hosts', 'state.json', 'upper/etc/hosts', 'work/work/incompat/volatile/dirty']) writeFileSync(join(dir, file), 'x');
  chmodSync(join(dir, 'work', 'work'), 0o000);
}

t.test('a small container-like tree goes whole; a symlink goes, its target stays', async (t) => {
  const outside = join(base, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'keep'), 'host file');
  const dir = join(base, 'small');
  containerLike(dir);
  symlinkSync(outside, join(dir, 'upper', 'link-to-outside'));
  symlinkSync(join(outside, 'keep'), join(dir, 'file-link'));
  t.equal(await removeSmallTree(dir), true, 'removed here');
  t.notOk(existsSync(dir), 'the directory is gone');
  t.strictSame(readdirSync(base).sort(), ['outside'], 'nothing renamed out of it is left');
  t.strictSame(readdirSync(outside), ['keep'], 'the linked directory keeps its entries');
  t.equal(readFileSync(join(outside, 'keep'), 'utf8'), 'host file', 'what a link pointed to is untouched');
});

t.test('a missing directory is removed already', async (t) => {
  t.equal(await removeSmallTree(join(base, 'never-made')), true);
});

t.test('a large tree is left whole to removeTree', async (t) => {
  const dir = join(base, 'large');
  containerLike(dir);
  mkdirSync(join(dir, 'upper', 'many'));
  for (let i = 0; i < 100; i++) writeFileSync(join(dir, 'upper', 'many', `f${i}`), String(i));
  t.equal(await removeSmallTree(dir), false, 'not removed here');
  t.equal(readdirSync(join(dir, 'upper', 'many')).length, 100, 'nothing was removed');
  t.ok(existsSync(join(dir, 'config.json')));
});

t.test('mountsUnderSync reads what mountsUnder reads', async (t) => {
  for (const dir of ['/', '/proc', '/sys', base]) t.strictSame(mountsUnderSync(dir), await mountsUnder(dir), dir);
});

t.test('removeContainer with sync: an unmounted directory goes, one with a mount below it stays', async (t) => {
  const store = new Store(join(base, 'store'));
  await store.init();
  const gone = containerPaths(store, 'a'.repeat(64));
  containerLike(gone.containerDir);
  await removeContainer(store, gone.id, { sync: true });
  t.notOk(existsSync(gone.containerDir), 'removed');
  await t.resolves(removeContainer(store, gone.id, { sync: true }), 'again: nothing to do, no error');

  const busy = containerPaths(store, 'b'.repeat(64));
  containerLike(busy.containerDir);
  execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', busy.merged]);
  t.teardown(() => {
    if (mountsUnderSync(busy.merged).length > 0) execFileSync('umount', [busy.merged]);
  });
  // Held busy: a process with its cwd in the mount, so the unmount fails and the directory must stay.
  const holder = execFileSync('sh', ['-c', `cd ${busy.merged} && (sleep 30 >/dev/null 2>&1 & echo $!)`], { encoding: 'utf8' }).trim();
  t.teardown(() => {
    try {
      process.kill(Number(holder), 'SIGKILL');
    } catch {
      // gone already
    }
  });
  await t.rejects(removeContainer(store, busy.id, { sync: true }), { code: 'ERR_MOUNT_FAILED' }, 'a busy mount is not removed');
  t.ok(existsSync(join(busy.containerDir, 'config.json')), 'and the directory stays');
  process.kill(Number(holder), 'SIGKILL');
  await new Promise((resolve) => setTimeout(resolve, 100));
  await removeContainer(store, busy.id, { sync: true });
  t.notOk(existsSync(busy.containerDir), 'unmounted and removed once free');
});
