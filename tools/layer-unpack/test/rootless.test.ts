/**
 * layer-unpack as an unprivileged user (issue 15): run through runCli's user namespace (the
 * store's keeper). A hostile-ish image — a mode-000 directory with a mode-000 file inside, a file
 * owned by 1000:1000, one owned by an id beyond any range, a setuid file, a hardlink, a device
 * node, then a whiteout and an opaque directory over the lower layer — unpacks for both test
 * users. Checked from outside (as root): with conveyor-rl-sub's range, mapped owners are real
 * (1000 → 300999 on the host) and only the unmappable one is recorded in meta.json `owners`;
 * with conveyor-rl-nosub's single mapping every file is the user's and the owners are recorded.
 * Whiteouts are char 0:0 nodes, opaque dirs carry user.overlay.opaque, the device is skipped and
 * reported, nothing is owned by root. Then a subset of hostile.test.ts's attacks, unpacked into
 * the store as the user: refused with their codes, the outside untouched, no staging left.
 */
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { NOSUB_USER, SUB_RANGE, SUB_USER, type RootlessUser, ownedByRoot, rootlessUser, runToolAs, userStore } from '../../../test/helpers/rootless.js';
import { storeImage } from './helpers/store.js';
import { block, fileEntry, makeTar, type TarEntry } from './helpers/tars.js';
import { diffSnapshots, readTree } from './helpers/tree.js';

const FAR = 200000; // beyond any range the test users have (and within tar-stream's 6 octal digits)

/** A store owned by `user` holding image `ref` made of `layers`; the store path. */
async function userImage(user: RootlessUser, t: Tap.Test, ref: string, layers: Buffer[]): Promise<string> {
  const store = userStore(user, t);
  await storeImage(store, ref, layers);
  execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, store]);
  return store;
}

/** img-ls | layer-unpack as `user`. */
async function unpackAs(user: RootlessUser, store: string, ref: string) {
  const listed = await runToolAs(user, 'img-ls', ['--root', store, ref]);
  if (listed.code !== 0) throw new Error(`img-ls: ${listed.stderr}`);
  return runToolAs(user, 'layer-unpack', ['--root', store, '--log-format=json'], { input: listed.stdout });
}

// Mode 000 needs raw headers (tar-stream writes a default mode for 0).
const LOCKED = Buffer.concat([block({ name: 'locked/', type: '5', mode: 0o000 }), fileEntry('locked/secret', 'hidden', { mode: 0o000 })]);
const LOWER: TarEntry[] = [
  { name: 'app', type: 'directory', uid: 1000, gid: 1000 },
  { name: 'app/owned', content: 'mine', uid: 1000, gid: 1000, mode: 0o640 },
  { name: 'far', content: 'far away', uid: FAR, gid: FAR },
  { name: 'bin', type: 'directory' },
  { name: 'bin/su', content: '#!/bin/true\n', mode: 0o4755 },
  { name: 'hl', type: 'link', linkname: 'app/owned' },
  { name: 'null', type: 'character-device', devmajor: 1, devminor: 3 },
  { name: 'gone', content: 'deleted above' },
  { name: 'opq', type: 'directory' },
  { name: 'opq/old', content: 'hidden by the opaque dir' },
];
const UPPER: TarEntry[] = [
  { name: '.wh.gone', content: '' },
  { name: 'opq', type: 'directory' },
  { name: 'opq/.wh..wh..opq', content: '' },
  { name: 'opq/new', content: 'new' },
];

for (const name of [SUB_USER, NOSUB_USER]) {
  t.test(`${name}: a hostile-ish image unpacks; owners mapped or recorded; nothing root-owned`, async (t) => {
    const user = rootlessUser(name);
    const store = await userImage(user, t, 'rl:1', [Buffer.concat([LOCKED, await makeTar(LOWER)]), await makeTar(UPPER)]);
    const run = await unpackAs(user, store, 'rl:1');
    t.equal(run.code, 0, run.stderr);
    const [rootfs] = run.records.filter((r) => r.type === 'rootfs');
    t.equal(rootfs?.layerDirs?.length, 2, 'two layer dirs');
    const [lower, upper] = rootfs.layerDirs as string[];
    t.match(run.stderr, /device/i, 'the skipped device is reported');

    // From outside: the host ids the namespace's ids are.
    const host = (inside: number) => (inside === 0 ? user.uid : user.range ? SUB_RANGE.start + inside - 1 : undefined);
    const owner = (path: string) => {
      const st = lstatSync(path);
      return [st.uid, st.gid];
    };
    const ranged = Boolean(user.range);
    t.strictSame(owner(join(lower, 'app', 'owned')), ranged ? [host(1000), host(1000)] : [user.uid, user.gid], 'app/owned');
    t.strictSame(owner(join(lower, 'far')), [user.uid, user.gid], 'an unmappable owner stays the user’s');
    t.strictSame(owner(join(lower, 'bin', 'su')), [user.uid, user.gid], 'root inside is the user');
    t.equal(lstatSync(join(lower, 'bin', 'su')).mode & 0o7777, 0o4755, 'setuid kept');
    t.equal(lstatSync(join(lower, 'locked')).mode & 0o7777, 0o000, 'mode 000 dir');
    t.equal(lstatSync(join(lower, 'locked', 'secret')).mode & 0o7777, 0o000, 'mode 000 file, inside it');
    t.equal(readFileSync(join(lower, 'locked', 'secret'), 'utf8'), 'hidden');
    t.equal(lstatSync(join(lower, 'hl')).ino, lstatSync(join(lower, 'app', 'owned')).ino, 'hardlink');
    t.notOk(readdirSync(lower).includes('null'), 'no device node');

    const whiteout = lstatSync(join(upper, 'gone'));
    t.ok(whiteout.isCharacterDevice() && whiteout.rdev === 0, 'whiteout: char 0:0');
    t.equal(
      execFileSync('getfattr', ['--only-values', '-n', 'user.overlay.opaque', join(upper, 'opq')], { encoding: 'utf8' }),
      'y',
      'opaque dir: user.overlay.opaque',
    );

    const meta = (dir: string) => JSON.parse(readFileSync(join(dir, '..', 'meta.json'), 'utf8'));
    const expectedOwners: Record<string, [number, number]> = ranged ? { far: [FAR, FAR] } : { app: [1000, 1000], 'app/owned': [1000, 1000], far: [FAR, FAR] };
    t.match(meta(lower), { rootless: true, opaqueXattr: 'user.overlay.opaque' });
    t.strictSame(meta(lower).owners, expectedOwners, 'owners: only what could not be applied');
    t.strictSame(meta(upper).owners, {});
    t.strictSame(ownedByRoot(store), [], 'nothing in the store is root’s');

    // Reused as it is by a second run (same keeper, same chain).
    const again = await unpackAs(user, store, 'rl:1');
    t.equal(again.code, 0, again.stderr);
    t.strictSame(again.records.find((r) => r.type === 'rootfs')?.layerDirs, rootfs.layerDirs);
  });
}

// A subset of hostile.test.ts's attacks, through the store (the namespace) instead of --flatten.
const attacks: { name: string; layers: (outside: string) => TarEntry[][]; code: string }[] = [
  { name: '../escape', layers: () => [[{ name: '../escape', content: 'x' }]], code: 'ERR_LAYER_MALICIOUS' },
  {
    name: 'symlink then a file through it',
    layers: (o) => [
      [
        { name: 'link', type: 'symlink', linkname: o },
        { name: 'link/sentinel', content: 'pwned' },
      ],
    ],
    code: 'ERR_LAYER_MALICIOUS',
  },
  { name: 'hardlink to /../outside', layers: () => [[{ name: 'pw', type: 'link', linkname: '/../outside/sentinel' }]], code: 'ERR_LAYER_MALICIOUS' },
  {
    name: 'hardlink through a symlinked dir',
    layers: (o) => [
      [
        { name: 'd', type: 'symlink', linkname: o },
        { name: 'x', type: 'link', linkname: 'd/sentinel' },
      ],
    ],
    code: 'ERR_LAYER_MALICIOUS',
  },
  { name: 'whiteout ../.wh.x', layers: () => [[{ name: '../.wh.outside', content: '' }]], code: 'ERR_LAYER_MALICIOUS' },
  { name: 'PAX path with ..', layers: () => [[{ name: 'innocent', content: 'x', pax: { path: '../outside/paxfile' } }]], code: 'ERR_LAYER_MALICIOUS' },
  {
    name: 'a dir replaced by a symlink in the same layer',
    layers: (o) => [
      [
        { name: 'd', type: 'directory' },
        { name: 'd', type: 'symlink', linkname: o },
        { name: 'd/sentinel', content: 'pwned' },
      ],
    ],
    code: 'ERR_LAYER_MALICIOUS',
  },
  { name: 'hardlink to a missing target', layers: () => [[{ name: 'pw', type: 'link', linkname: '/etc/passwd' }]], code: 'ERR_LAYER_INVALID' },
];

t.test('hostile layers, unpacked into the store as conveyor-rl-sub: refused, the outside untouched', async (t) => {
  const user = rootlessUser(SUB_USER);
  const store = userStore(user, t);
  // The sentinel directory the attacks aim at, the user's own (so a write would succeed if it got through).
  const outside = join(store, '..', 'outside');
  mkdirSync(join(outside, 'sub'), { recursive: true });
  writeFileSync(join(outside, 'sentinel'), 'precious\n');
  execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, outside]);
  // One image per attack, all unpacked by one run that goes on after each failure.
  for (const [i, attack] of attacks.entries()) await storeImage(store, `bad:${i}`, await Promise.all(attack.layers(outside).map((l) => makeTar(l))));
  execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, store]);
  const before = readTree(outside);
  const listed = await runToolAs(user, 'img-ls', ['--root', store, 'bad']);
  t.equal(listed.records.length, attacks.length, listed.stderr);
  const run = await runToolAs(user, 'layer-unpack', ['--root', store, '--keep-going', '--log-format=json'], { input: listed.stdout });
  t.equal(run.code, 1, 'exit 1');
  t.equal(run.records.filter((r) => r.type === 'rootfs').length, 0, 'no rootfs');
  for (const [i, attack] of attacks.entries()) {
    const failure = run.logs.find((l) => l.level === 'error' && JSON.stringify(l).includes(`bad:${i}`));
    t.equal(failure?.code, attack.code, `${attack.name}: ${attack.code}`);
  }
  t.strictSame(diffSnapshots(before, readTree(outside)), [], 'outside untouched');
  t.strictSame(readdirSync(join(store, 'layers')), [], 'nothing left in layers/');
});
