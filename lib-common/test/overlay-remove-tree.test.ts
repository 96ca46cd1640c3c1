/**
 * removeTree (overlay/mount.ts), the container directory's removal: a whole
 * tree goes (files, nested and mode-000 directories, whiteout-like devices),
 * a symlink goes as a link (what it points to stays), a missing directory is
 * no error, many entries go side by side.
 */
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeTree } from '@conveyor/lib-common/overlay/mount';

const base = mkdtempSync(join(tmpdir(), 'conveyor-rmtree-'));
t.teardown(() => rmSync(base, { recursive: true, force: true }));

t.test('a container-like tree goes whole; a symlink goes, its target stays', async (t) => {
  const outside = join(base, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'keep'), 'host file');
  const dir = join(base, 'container');
  for (const sub of ['upper/etc', 'upper/deep/er/still', 'work/work/incompat/volatile', 'merged']) mkdirSync(join(dir, sub), { recursive: true });
  for (const file of ['config.json', 'hosts', 'upper/etc/hosts', 'upper/deep/er/still/f']) writeFileSync(join(dir, file), 'x');
  symlinkSync(outside, join(dir, 'upper', 'link-to-outside'));
  symlinkSync(join(outside, 'keep'), join(dir, 'file-link'));
  chmodSync(join(dir, 'work', 'work'), 0o000);
  await removeTree(dir);
  t.notOk(existsSync(dir), 'the directory is gone');
  t.equal(readFileSync(join(outside, 'keep'), 'utf8'), 'host file', 'what a link pointed to is untouched');
});

t.test('a missing directory is no error', async (t) => {
  await t.resolves(removeTree(join(base, 'never-made')));
});

t.test('many files side by side', async (t) => {
  const dir = join(base, 'files-only');
  mkdirSync(dir);
  for (let i = 0; i < 50; i++) writeFileSync(join(dir, `f${i}`), String(i));
  await removeTree(dir);
  t.notOk(existsSync(dir), 'many entries removed side by side');
});
