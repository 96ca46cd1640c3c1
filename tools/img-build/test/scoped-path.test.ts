/**
 * The shared in-root resolver (lib-common container/rootfs.ts resolveScoped)
 * as COPY uses it, on a hostile tree: absolute and `..` symlink targets stay
 * in the root, a `..` climbing back out of a missing component resumes the
 * lookup (so a symlink after it is still followed inside the root, not left
 * for the kernel to follow out of it), loops fail with the caller's code;
 * and copyInto through such a destination writes inside the rootfs only.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { resolveScoped } from '@conveyor/lib-common/container/rootfs';
import { copyInto } from '../dist/copy/index.js';

function hostileTree(t: { teardown(fn: () => void): void }) {
  const top = mkdtempSync(join(tmpdir(), 'conveyor-scoped-'));
  t.teardown(() => rmSync(top, { recursive: true, force: true }));
  const root = join(top, 'rootfs');
  const outside = join(top, 'outside');
  mkdirSync(outside);
  mkdirSync(join(root, 'etc'), { recursive: true });
  symlinkSync(outside, join(root, 'abs')); // an absolute target: the host's dir if the kernel followed it
  symlinkSync('../../../..', join(root, 'up'));
  symlinkSync('loop2', join(root, 'loop1'));
  symlinkSync('loop1', join(root, 'loop2'));
  return { top, root, outside };
}

t.test('resolveScoped keeps every path in the root', async (t) => {
  const { root, outside } = hostileTree(t);
  const inRoot = (relative: string) => ({ hostPath: relative ? join(root, relative) : root, relative });
  const cases: [string, string, string][] = [
    ['an absolute target restarts at the root', '/abs/x', `${outside.slice(1)}/x`],
    ['.. in a target stops at the root', 'up/etc', 'etc'],
    ['.. in the path stops at the root', '../../etc/../etc', 'etc'],
    ['a missing component is kept as written', 'nope/x', 'nope/x'],
    ['.. back out of a missing component resumes the lookup: the link after it is followed in the root', 'nope/../abs/x', `${outside.slice(1)}/x`],
    ['.. inside the missing part stays lexical', 'nope/a/../b', 'nope/b'],
    ['the root itself', '/', ''],
  ];
  for (const [name, path, relative] of cases) t.strictSame(await resolveScoped(root, path, { code: 'ERR_BUILD_DEST' }), inRoot(relative), name);
  t.strictSame(await resolveScoped(root, 'abs', { followFinal: false, code: 'ERR_BUILD_DEST' }), inRoot('abs'), 'followFinal false keeps the last link');
  await t.rejects(resolveScoped(root, 'loop1/x', { code: 'ERR_BUILD_SOURCE' }), { code: 'ERR_BUILD_SOURCE' }, 'a loop fails with the caller’s code');
  await t.rejects(resolveScoped(root, 'loop1', { code: 'ERR_SPAWN_FAILED' }), { code: 'ERR_SPAWN_FAILED' });
});

t.test('COPY to /nope/../abs/ writes inside the rootfs, not through the link', async (t) => {
  const { top, root, outside } = hostileTree(t);
  const context = join(top, 'context');
  mkdirSync(context);
  writeFileSync(join(context, 'f.txt'), 'payload\n');
  await copyInto({ rootfs: root, dest: '/nope/../abs/', sources: ['f.txt'], from: { root: context, trusted: false } });
  t.notOk(existsSync(join(outside, 'f.txt')), 'nothing written on the host');
  t.equal(readFileSync(join(root, outside.slice(1), 'f.txt'), 'utf8'), 'payload\n', 'the link taken as the image sees it');
});
