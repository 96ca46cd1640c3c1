/**
 * vol-ls and vol-rm on real volumes and containers (ctr-spawn, runc, the
 * busybox fixture): the records and who uses each volume, --filter, -q, the
 * table; removal refused while a (stopped) container uses the volume, -f,
 * names and `volume` records on stdin (vol-ls | vol-rm), --prune (anonymous
 * only, --all); hostile input: names with ../ or /, a record whose mountpoint
 * points elsewhere, malformed lines (stdin:N), unknown flags and volumes.
 */
import t from 'tap';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deleteAllContainers, startDetached, waitForState } from '../../../test/helpers/containers.js';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';

const root = tempStore('conveyor-vol-rm-');
t.teardown(async () => {
  await deleteAllContainers(root);
  removeStore(root);
});
const busybox = busyboxRootfs(root);
const withVolumes = (volumes: string[]) => ({ ...busybox, config: { ...busybox.config, Volumes: Object.fromEntries(volumes.map((v) => [v, {}])) } });
const volLs = (args: string[]) => runTool('vol-ls', ['--root', root, ...args]);
const volRm = (args: string[], input?: string) => runTool('vol-rm', ['--root', root, ...args], { input });
const exists = (name: string) => existsSync(join(root, 'volumes', name));
const HEX = /^[0-9a-f]{64}$/;

// One stopped container holding a named volume and an anonymous one; two named volumes nobody uses.
const [user, ...frees] = await Promise.all([
  startDetached(root, withVolumes(['/cache']), ['-v', 'inuse:/data'], ['sh', '-c', 'echo x > /data/f']),
  ...['free1', 'free2'].map((name) => runTool('ctr-spawn', ['--root', root, '-v', `${name}:/v`, '--', 'true'], { input: JSON.stringify(busybox) + '\n' })),
]);
for (const run of frees) if (run.code !== 0) throw new Error(run.stderr);
await waitForState(root, user.id, (s) => s?.status === 'exited');

t.test('vol-ls: records with who uses each, filters, -q, the table', async (t) => {
  const [all, dangling, named, table, size, ...bad] = await Promise.all([
    volLs([]),
    volLs(['--filter', 'dangling=true', '-q']),
    volLs(['--filter', 'name=free', '--filter', 'dangling=false']),
    volLs(['--table', '--size']),
    volLs(['--size', '--filter', 'name=inuse']),
    volLs(['--filter', 'driver=local']),
    volLs(['--bogus']),
    volLs(['extra']),
  ]);
  t.equal(all.code, 0, all.stderr);
  const byName = Object.fromEntries(all.records.map((r) => [r.name, r]));
  t.match(byName.inuse, {
    type: 'volume',
    v: 1,
    anonymous: false,
    usedBy: [user.id],
    mountpoint: join(root, 'volumes', 'inuse', '_data'),
    store: root,
    createdAt: String,
  });
  t.match(byName.free1, { anonymous: false, usedBy: [] });
  const anon = all.records.filter((r) => r.anonymous);
  t.equal(anon.length, 1, 'the image VOLUME of the stopped container');
  t.match(anon[0], { name: HEX, usedBy: [user.id] });
  t.strictSame(dangling.stdout.split('\n').filter(Boolean).sort(), ['free1', 'free2']);
  t.strictSame(named.records, [], 'filters of different keys all match');
  t.match(table.stdout, /^DRIVER\s+VOLUME NAME\s+CREATED\s+USED BY\s+SIZE\n/);
  t.match(table.stdout, new RegExp(`local\\s+inuse\\s+.*ago\\s+${user.id.slice(0, 12)}\\s+\\d`));
  t.ok(size.records[0].size > 0, 'size counted');
  t.strictSame(
    bad.map((r) => r.code),
    [2, 2, 2],
    'an unknown filter, an unknown flag, an argument: usage',
  );
});

t.test('vol-rm: in use refused (the others still removed), -f, unknown', async (t) => {
  const refused = await volRm(['inuse', 'free1', 'nosuch']);
  t.equal(refused.code, 1);
  t.match(refused.stderr, new RegExp(`volume inuse is in use by container ${user.id.slice(0, 12)}`));
  t.match(refused.stderr, /no such volume: nosuch/);
  t.strictSame(refused.records, [{ type: 'removed', v: 1, volume: 'free1', store: root }]);
  t.match(
    refused.errors,
    [
      { type: 'error', code: 'ERR_VOLUME_IN_USE' },
      { type: 'error', code: 'ERR_VOLUME_NOT_FOUND' },
    ],
    'and downstream hears of both',
  );
  t.ok(exists('inuse'), 'the volume in use stays');
  t.notOk(exists('free1'));
  const [json, forced] = await Promise.all([volRm(['--log-format=json', 'inuse']), volRm(['-f', 'nosuch'])]);
  t.match(json.logs, [{ code: 'ERR_VOLUME_IN_USE' }]);
  t.equal(forced.code, 0, '-f: a missing volume is no error');
});

t.test('vol-rm on stdin: vol-ls records, bare names, pass-through, hostile records', async (t) => {
  // A host directory a forged record points at: it must survive.
  const target = join(root, 'victim');
  mkdirSync(target, { recursive: true });
  writeFileSync(join(target, 'keep'), 'x');
  const input = [
    JSON.stringify({ type: 'volume', name: 'free2', mountpoint: target }),
    JSON.stringify({ type: 'image', ref: 'x' }),
    JSON.stringify({ type: 'volume', name: '../victim' }),
    JSON.stringify({ type: 'volume', name: '/etc' }),
    JSON.stringify({ type: 'volume', mountpoint: target }),
    'nosuch2',
  ].join('\n');
  const run = await volRm([], input + '\n');
  t.equal(run.code, 2, 'the first failure: a bad record');
  t.strictSame(run.records, [
    { type: 'removed', v: 1, volume: 'free2', store: root },
    { type: 'image', ref: 'x' },
  ]);
  t.match(run.stderr, /stdin:3: volume record without a valid name: "\.\.\/victim"/);
  t.match(run.stderr, /stdin:4: volume record without a valid name: "\/etc"/);
  t.match(run.stderr, /stdin:5: volume record without a valid name: undefined/);
  t.match(run.stderr, /stdin:6: no such volume: nosuch2/);
  t.ok(existsSync(join(target, 'keep')), 'the directory a forged mountpoint named is untouched');
  const malformed = await volRm([], '{"type":"volume","name":"inuse"}\n{not json\n');
  t.equal(malformed.code, 2);
  t.match(malformed.stderr, /stdin:2: not valid JSON/);
  const args = await Promise.all([volRm(['../victim']), volRm(['--bogus', 'x'])]);
  t.strictSame(
    args.map((r) => r.code),
    [2, 2],
  );
  t.match(args[0].stderr, /invalid volume name "\.\.\/victim"/);
  t.ok(existsSync(target));
});

t.test('--prune: unused anonymous volumes; --all: named ones too; in use never', async (t) => {
  const anonymousNow = () => readdirSync(join(root, 'volumes')).filter((n) => HEX.test(n));
  const before = anonymousNow();
  // A dangling anonymous volume: its container removed without -v, as docker rm leaves one.
  const gone = await startDetached(root, withVolumes(['/c']), ['-v', 'orphaned:/o'], ['true']);
  await waitForState(root, gone.id, (s) => s?.status === 'exited');
  const dangling = anonymousNow().filter((n) => !before.includes(n));
  t.equal(dangling.length, 1);
  t.equal((await runTool('ctr-rm', ['--root', root, gone.id])).code, 0);
  t.ok(exists(dangling[0]), 'ctr-rm without -v leaves it');
  const pruned = await volRm(['--prune']);
  t.equal(pruned.code, 0, pruned.stderr);
  t.strictSame(pruned.records, [{ type: 'removed', v: 1, volume: dangling[0], store: root }], 'only the unused anonymous volume');
  t.ok(exists('orphaned'), 'named volumes stay without --all');
  t.ok(before.every(exists), "the stopped container's anonymous volume is in use");
  const all = await volRm(['--prune', '--all']);
  t.equal(all.code, 0, all.stderr);
  t.strictSame(
    all.records.map((r) => r.volume),
    ['orphaned'],
    '--all: the unused named volume goes',
  );
  t.ok(exists('inuse'), 'the one in use stays');
  const usage = await Promise.all([volRm(['--prune', 'x']), volRm(['--all', 'x'])]);
  t.strictSame(
    usage.map((r) => r.code),
    [2, 2],
  );
});

t.test('ctr-rm -v: the anonymous volumes a container made go with it, unless another container mounts one', async (t) => {
  const [userVolume] = (await volLs(['-q'])).stdout.split('\n').filter((n) => HEX.test(n));
  t.ok(userVolume, "the stopped container's anonymous volume");
  // A second container mounting that volume by its name, with an anonymous volume of its own.
  const sharer = await startDetached(root, withVolumes(['/own']), ['-v', `${userVolume}:/shared`], ['true']);
  await waitForState(root, sharer.id, (s) => s?.status === 'exited');
  const [sharerVolume] = (await volLs(['-q'])).stdout.split('\n').filter((n) => HEX.test(n) && n !== userVolume);
  t.ok(sharerVolume);
  const first = await runTool('ctr-rm', ['--root', root, '-v', user.id]);
  t.equal(first.code, 0, first.stderr);
  t.ok(exists(userVolume), 'kept: the other container mounts it');
  const second = await runTool('ctr-rm', ['--root', root, '-v', sharer.id]);
  t.equal(second.code, 0, second.stderr);
  t.notOk(exists(sharerVolume), "ctr-rm -v removed the second container's own anonymous volume");
  t.ok(exists(userVolume), 'not the one it only mounted (it did not make it)');
  const now = await volRm([userVolume, 'inuse']);
  t.equal(now.code, 0, now.stderr);
});

t.test('img-prune -a leaves volumes alone (as docker image prune)', async (t) => {
  const made = await runTool('ctr-spawn', ['--root', root, '-v', 'keepme:/k', '--', 'sh', '-c', 'echo data > /k/f'], { input: JSON.stringify(busybox) + '\n' });
  t.equal(made.code, 0, made.stderr);
  const prune = await runTool('img-prune', ['--root', root, '-a']);
  t.equal(prune.code, 0, prune.stderr);
  t.ok(
    prune.records.some((r) => r.type === 'untagged'),
    'the image went',
  );
  t.equal(readFileSync(join(root, 'volumes', 'keepme', '_data', 'f'), 'utf8'), 'data\n', 'the volume stayed');
  t.match((await volLs(['-q'])).stdout, /^keepme$/m);
});
