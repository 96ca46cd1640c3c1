/**
 * img-rm and img-prune as an unprivileged user (issue 15): a store whose layers were unpacked
 * through the user namespace holds files owned by subordinate ids (a 1000:1000 directory with a
 * file inside → host 300999 for conveyor-rl-sub) and mode-000 directories, which the user cannot
 * remove by itself (checked: rm -rf as the user fails); img-rm
 * --prune and img-prune -a enter the namespace (the store records a keeper) and leave nothing:
 * no layer, no blob, no file of a subordinate id, nothing of root's. A store never unpacked
 * (no keeper) is cleaned without any namespace.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { busyboxLayout, importToStore } from '../../../test/helpers/fixtures.js';
import { storeImage } from '../../layer-unpack/test/helpers/store.js';
import { block, fileEntry, makeTar } from '../../layer-unpack/test/helpers/tars.js';
import { NOSUB_USER, SUB_RANGE, SUB_USER, ownedByRoot, rootlessUser, runAs, runToolAs, userStore } from '../../../test/helpers/rootless.js';

const REF = 'docker.io/library/busybox:latest';
const layout = busyboxLayout();

/** Paths under `dir` owned by a uid or gid outside `keep`, as `find` lists them. */
const foreignOwned = (dir: string, uid: number, gid: number) =>
  execFileSync('find', [dir, '(', '!', '-uid', String(uid), '-o', '!', '-gid', String(gid), ')', '-print'], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean);

for (const name of [SUB_USER, NOSUB_USER]) {
  t.test(`${name}: img-rm --prune and img-prune -a remove layers of subordinate ids`, async (t) => {
    const user = rootlessUser(name);
    const store = userStore(user, t);
    importToStore(`${layout}:latest`, store, REF);
    // A layer the user alone cannot remove: a subordinate id's directory with a file in it, a mode-000 directory.
    const hard = Buffer.concat([
      block({ name: 'locked/', type: '5', mode: 0o000 }),
      fileEntry('locked/f', 'x', { mode: 0o000 }),
      await makeTar([
        { name: 'app', type: 'directory', uid: 1000, gid: 1000 },
        { name: 'app/f', content: 'y', uid: 1000, gid: 1000 },
      ]),
    ]);
    await storeImage(store, 'docker.io/library/hard:1', [hard]);
    execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, store]);
    execFileSync('chmod', ['700', store]);
    const listed = await runToolAs(user, 'img-ls', ['--root', store]);
    const unpacked = await runToolAs(user, 'layer-unpack', ['--root', store], { input: listed.stdout });
    t.equal(unpacked.code, 0, unpacked.stderr);
    const layers = readdirSync(join(store, 'layers')).filter((n) => !n.startsWith('.'));
    t.equal(layers.length, 2, 'two layers unpacked');
    if (user.range) {
      t.ok(
        foreignOwned(store, user.uid, user.gid).some((p) => p.endsWith('/app/f')),
        `app/f is a subordinate id's (${SUB_RANGE.start + 999})`,
      );
    }
    // Without the namespace the user could not remove them (a copy, so the store stays as it is).
    const copy = join(store, '..', 'copy');
    execFileSync('cp', ['-a', join(store, 'layers'), copy]);
    const rm = await runAs(user, 'rm', ['-rf', copy]);
    t.not(rm.code, 0, `rm -rf as the user fails: ${rm.stderr.trim().split('\n')[0]}`);

    const removed = await runToolAs(user, 'img-rm', ['--root', store, '--prune', 'hard:1']);
    t.equal(removed.code, 0, removed.stderr);
    t.match(removed.records, [{ type: 'untagged' }]);

    const pruned = await runToolAs(user, 'img-prune', ['--root', store, '-a']);
    t.equal(pruned.code, 0, pruned.stderr);
    t.match(pruned.records.find((r) => r.type === 'total') ?? {}, { type: 'total' });
    t.strictSame(
      readdirSync(join(store, 'layers')).filter((n) => !n.startsWith('.')),
      [],
      'no layer left',
    );
    t.strictSame(readdirSync(join(store, 'blobs', 'sha256')), [], 'no blob left');
    t.strictSame(foreignOwned(store, user.uid, user.gid), [], 'no file of another id left');
    t.strictSame(ownedByRoot(store), [], 'nothing of root’s');
  });
}

t.test('a store never unpacked is cleaned without a namespace', async (t) => {
  const user = rootlessUser(SUB_USER);
  const store = userStore(user, t);
  importToStore(`${layout}:latest`, store, REF);
  execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, store]);
  execFileSync('chmod', ['700', store]);
  const removed = await runToolAs(user, 'img-rm', ['--root', store, 'busybox']);
  t.equal(removed.code, 0, removed.stderr);
  const pruned = await runToolAs(user, 'img-prune', ['--root', store, '-a']);
  t.equal(pruned.code, 0, pruned.stderr);
  t.strictSame(readdirSync(join(store, 'blobs', 'sha256')), [], 'no blob left');
  t.notOk(existsSync(join(store, 'run')), 'no user namespace made');
});
