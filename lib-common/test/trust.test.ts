import t from 'tap';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { assertTrustedStore } from '../src/store.js';

// The ownership cases need root (chown); the suite runs as root, as overlay and runc tests do.
const asRoot = process.geteuid?.() === 0;

function base(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync('/tmp/conveyor-trust-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('a store under root-owned, closed directories is trusted (a root-owned sticky /tmp included)', async (t) => {
  const dir = base(t);
  const store = join(dir, 'store');
  mkdirSync(store, { mode: 0o700 });
  await assertTrustedStore(store);
  await assertTrustedStore(join(dir, 'not-yet', 'store'));
});

t.test('a store others can write is refused', async (t) => {
  const dir = base(t);
  const store = join(dir, 'store');
  mkdirSync(store);
  chmodSync(store, 0o775);
  await t.rejects(assertTrustedStore(store), { code: 'ERR_STORE_UNSAFE', message: /mode 0775/ });
  chmodSync(store, 0o1777);
  await t.rejects(assertTrustedStore(store), { code: 'ERR_STORE_UNSAFE' }, 'a sticky store is still refused: others could create names in it');
});

t.test('a world-writable, non-sticky ancestor is refused', async (t) => {
  const dir = base(t);
  const open = join(dir, 'open');
  mkdirSync(join(open, 'store'), { recursive: true });
  chmodSync(open, 0o777);
  await t.rejects(assertTrustedStore(join(open, 'store')), { code: 'ERR_STORE_UNSAFE', message: /store parent .*open is mode 0777/ });
});

t.test('a store not yet created directly in a sticky directory is refused (another user could create it first)', async (t) => {
  const dir = base(t);
  chmodSync(dir, 0o1777);
  await t.rejects(assertTrustedStore(join(dir, 'store')), { code: 'ERR_STORE_UNSAFE' });
  mkdirSync(join(dir, 'store'), { mode: 0o700 });
  await assertTrustedStore(join(dir, 'store'));
});

t.test('a store or ancestor owned by another user is refused', { skip: !asRoot && 'needs root to chown' }, async (t) => {
  const dir = base(t);
  const theirs = join(dir, 'theirs');
  mkdirSync(join(theirs, 'store'), { recursive: true });
  chownSync(theirs, 65534, 65534);
  await t.rejects(assertTrustedStore(join(theirs, 'store')), { code: 'ERR_STORE_UNSAFE', message: /owned by uid 65534/ });
  chownSync(theirs, 0, 0);
  chownSync(join(theirs, 'store'), 65534, 65534);
  await t.rejects(assertTrustedStore(join(theirs, 'store')), { code: 'ERR_STORE_UNSAFE', message: /owned by uid 65534/ });
  // In a root-owned sticky dir, an entry another user owns could be replaced by them.
  const sticky = join(dir, 'sticky');
  mkdirSync(join(sticky, 'them', 'store'), { recursive: true });
  chmodSync(sticky, 0o1777);
  chownSync(join(sticky, 'them'), 65534, 65534);
  await t.rejects(assertTrustedStore(join(sticky, 'them', 'store')), { code: 'ERR_STORE_UNSAFE' });
});

t.test('a store path through a symlink is refused', async (t) => {
  const dir = base(t);
  mkdirSync(join(dir, 'real', 'store'), { recursive: true });
  symlinkSync(join(dir, 'real'), join(dir, 'link'));
  await t.rejects(assertTrustedStore(join(dir, 'link', 'store')), { code: 'ERR_STORE_UNSAFE', message: /symlink/ });
});
