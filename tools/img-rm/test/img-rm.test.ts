/**
 * img-rm: targets parsed table-driven; then the built tool on a store with
 * busybox under three references (two on one image), image records piped in
 * from img-ls, bad and forged input, and a real container (ctr-spawn -d)
 * whose image may not lose its last reference without -f.
 */
import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout, importToStore } from '../../../test/helpers/fixtures.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool, runToolSync } from '../../../test/helpers/tools.js';
import { parseTarget, recordTarget } from '../src/targets.js';

const D = `sha256:${'ab'.repeat(32)}`;

// [input, expected target (without source), or the error code]
const typed: [string, object | string][] = [
  ['busybox', { kind: 'ref', ref: 'docker.io/library/busybox:latest', input: 'busybox' }],
  ['localhost:5000/app:v2', { kind: 'ref', ref: 'localhost:5000/app:v2' }],
  [`busybox@${D}`, { kind: 'ref', ref: `docker.io/library/busybox@${D}` }],
  [D, { kind: 'digest', digest: D }],
  ['ab'.repeat(32), { kind: 'digest', digest: D }],
  ['abab12', { kind: 'prefix', hex: 'abab12', ref: 'docker.io/library/abab12:latest' }],
  ['sha256:abab12', { kind: 'prefix', hex: 'abab12', ref: undefined }],
  ['abc', { kind: 'ref', ref: 'docker.io/library/abc:latest' }],
  ['Bad!', 'ERR_REF_INVALID'],
  ['sha256:xyz', { kind: 'ref', ref: 'docker.io/library/sha256:xyz' }],
  ['sha256:', 'ERR_REF_INVALID'],
];
for (const [input, expected] of typed) {
  if (typeof expected === 'string') t.throws(() => parseTarget(input, 'argument 1'), { code: expected }, `${input} is refused`);
  else t.match(parseTarget(input, 'argument 1'), { ...expected, source: 'argument 1' }, `${input} parses`);
}

// [record, expected target, undefined (passes through), or the error code]
const records: [Record<string, unknown>, object | undefined | string][] = [
  [
    { type: 'image', ref: 'busybox', digest: D },
    { kind: 'ref', ref: 'docker.io/library/busybox:latest', expect: [D] },
  ],
  [{ ref: 'busybox:v2' }, { kind: 'ref', ref: 'docker.io/library/busybox:v2', expect: undefined }],
  [
    { type: 'image', digest: D },
    { kind: 'digest', digest: D },
  ],
  [{ type: 'container', id: 'x' }, undefined],
  [{ type: 'rootfs', ref: 'busybox' }, undefined],
  [{ type: 'image' }, 'ERR_INPUT_RECORD'],
  [{ type: 'image', ref: 5 }, 'ERR_INPUT_RECORD'],
  [{ type: 'image', ref: 'busybox', digest: 'sha256:../../etc' }, 'ERR_INPUT_RECORD'],
  [{ type: 'image', ref: 'busybox', indexDigest: 7 }, 'ERR_INPUT_RECORD'],
  [{ type: 'image', ref: 'UPPER' }, 'ERR_INPUT_RECORD'],
  [{ type: 'image', digest: 'md5:00' }, 'ERR_INPUT_RECORD'],
  [{ type: ['image'] }, 'ERR_INPUT_RECORD'],
];
for (const [record, expected] of records) {
  const name = JSON.stringify(record);
  if (typeof expected === 'string') t.throws(() => recordTarget(record, 'stdin:1'), { code: expected, message: /^stdin:1: / }, `${name} is refused`);
  else if (expected === undefined) t.equal(recordTarget(record, 'stdin:1'), undefined, `${name} passes through`);
  else t.match(recordTarget(record, 'stdin:1'), expected, `${name} is a target`);
}

const LATEST = 'docker.io/library/busybox:latest';
const OTHER = 'docker.io/library/busybox:other';
const V2 = 'docker.io/library/busybox:v2';

/** A store with busybox latest, other (the same image) and v2. */
function freshStore(t: Tap.Test): string {
  const root = tempStore('conveyor-rm-');
  t.teardown(() => removeStore(root));
  importToStore(`${busyboxLayout()}:latest`, root, LATEST);
  importToStore(`${busyboxLayout()}:latest`, root, OTHER);
  importToStore(`${busyboxLayout()}:v2`, root, V2);
  return root;
}

const refs = (root: string) =>
  JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')).manifests.map((m: any) => m.annotations['org.opencontainers.image.ref.name']);
const rm = (root: string, args: string[], input?: string) => runTool('img-rm', ['--root', root, '--log-format=json', ...args], { input });
const digestOf = (root: string, ref: string) => runToolSync('img-ls', ['--root', root, '--json', ref]).records[0].digest as string;

t.test('by reference, by digest, by ID prefix', async (t) => {
  const root = freshStore(t);
  const latest = digestOf(root, 'busybox:latest');
  const v2 = digestOf(root, 'busybox:v2');
  const blobs = readdirSync(join(root, 'blobs', 'sha256')).sort();

  const one = await rm(root, ['busybox']);
  t.equal(one.code, 0, one.stderr);
  t.strictSame(one.records, [{ type: 'untagged', v: 1, ref: LATEST, digest: latest, store: root }], 'another reference holds the image: untagged only');
  t.strictSame(refs(root), [OTHER, V2]);

  const two = await rm(root, [latest]);
  t.equal(two.code, 0, two.stderr);
  t.strictSame(two.records, [
    { type: 'untagged', v: 1, ref: OTHER, digest: latest, store: root },
    { type: 'deleted', v: 1, digest: latest, store: root },
  ]);

  const three = await rm(root, [v2.slice(7, 19)]);
  t.equal(three.code, 0, three.stderr);
  t.match(three.records, [
    { type: 'untagged', ref: V2 },
    { type: 'deleted', digest: v2 },
  ]);
  t.strictSame(refs(root), []);
  t.strictSame(readdirSync(join(root, 'blobs', 'sha256')).sort(), blobs, 'blobs are left to img-prune');
});

t.test('failures are reported per image, the others still removed; exit 1 or 2 for the first', async (t) => {
  const root = freshStore(t);
  const run = await rm(root, ['nosuch:tag', 'busybox:v2', 'Bad!']);
  t.equal(run.code, 1);
  t.strictSame(
    run.logs.map((l) => l.code),
    ['ERR_IMAGE_NOT_FOUND', 'ERR_REF_INVALID'],
  );
  t.match(run.logs[0].message, /^argument 1: no such image: docker.io\/library\/nosuch:tag/);
  t.match(run.records, [{ type: 'untagged', ref: V2 }, { type: 'deleted' }]);
  const bad = await rm(root, ['Bad!', 'nosuch']);
  t.equal(bad.code, 2, 'the first failure (bad input) decides');
  t.equal((await rm(root, ['--bogus', 'busybox'])).code, 2, 'an unknown flag');
  t.strictSame(refs(root), [LATEST, OTHER], 'nothing else changed');

  const missing = tempStore('conveyor-rm-');
  t.teardown(() => removeStore(missing));
  const none = await rm(missing, ['busybox']);
  t.equal(none.code, 1);
  t.equal(none.logs[0]?.code, 'ERR_IMAGE_NOT_FOUND');
  t.strictSame(readdirSync(missing), [], 'an empty store is not initialised by a failed img-rm');
});

t.test('image records on stdin: removed while they still point where listed; other records pass; bad lines name stdin:N', async (t) => {
  const root = freshStore(t);
  const listed = runToolSync('img-ls', ['--root', root, '--json', 'busybox:v2']).stdout;
  const container = '{"type":"container","v":1,"id":"abc","status":"exited"}';
  const run = await rm(root, [], `${container}\n${listed}`);
  t.equal(run.code, 0, run.stderr);
  t.strictSame(run.records[0], JSON.parse(container), 'other records pass through first, in order');
  t.match(run.records.slice(1), [{ type: 'untagged', ref: V2 }, { type: 'deleted' }]);

  // A record whose tag has since moved to another image: refused, not removed.
  const stale = JSON.stringify({ type: 'image', v: 1, ref: LATEST, digest: `sha256:${'0'.repeat(64)}` });
  const moved = await rm(root, [], `${stale}\n`);
  t.equal(moved.code, 1);
  t.match(moved.logs[0], { code: 'ERR_IMAGE_NOT_FOUND', message: /^stdin:1: .* now points at/ });
  t.strictSame(refs(root), [LATEST, OTHER]);

  const forged = await rm(root, [], `busybox:other\n{"type":"image","ref":"busybox","digest":"sha256:../../../etc/passwd"}\n`);
  t.equal(forged.code, 2);
  t.match(forged.logs[0], { code: 'ERR_INPUT_RECORD', message: /^stdin:2: digest is not a sha256 digest/ });
  t.match(forged.records, [{ type: 'untagged', ref: OTHER }], 'the bare reference on line 1 was removed');

  const broken = await rm(root, [], '\n{"type":"image",\nbusybox\n');
  t.equal(broken.code, 2);
  t.match(broken.logs[0], { code: 'ERR_INPUT_JSON', message: /^stdin:2: not valid JSON/ });
  t.strictSame(refs(root), [LATEST], 'a bad line ends the run before later lines');
});

t.test('an image a container uses keeps its last reference unless -f; --prune keeps its layers', async (t) => {
  const root = freshStore(t);
  const image = runToolSync('img-ls', ['--root', root, '--json', 'busybox:latest']).stdout;
  const rootfs = runToolSync('layer-unpack', ['--root', root], { input: image });
  t.equal(rootfs.code, 0, rootfs.stderr);
  const spawn = await runTool('ctr-spawn', ['--root', root, '-d', '--name', 'rm-test', '--', 'sh', '-c', 'trap "exit 0" TERM; while :; do sleep 0.1; done'], {
    input: rootfs.stdout,
  });
  t.equal(spawn.code, 0, spawn.stderr);
  const id = spawn.records[0]?.id as string;
  t.teardown(() => runToolSync('ctr-rm', ['--root', root, '-f', id]));

  const first = await rm(root, ['busybox:latest']);
  t.equal(first.code, 0, 'another reference (other) still holds the image');
  const refused = await rm(root, ['busybox:other']);
  t.equal(refused.code, 1);
  t.match(refused.logs[0], { code: 'ERR_IMAGE_IN_USE', message: /container rm-test \(running\)/ });
  t.strictSame(refs(root), [OTHER, V2], 'nothing removed');

  t.equal(runToolSync('ctr-stop', ['--root', root, '-t', '1', id]).code, 0);
  const stopped = await rm(root, ['busybox:other']);
  t.equal(stopped.code, 1, 'a stopped container holds its image too');
  t.match(stopped.logs[0], { code: 'ERR_IMAGE_IN_USE', message: /\(exited\)/ });

  const forced = await rm(root, ['-f', '--prune', 'busybox:other', 'busybox:v2']);
  t.equal(forced.code, 0, forced.stderr);
  t.match(
    forced.records.map((r) => r.type),
    ['untagged', 'deleted', 'untagged', 'deleted'],
  );
  const freed = forced.records.filter((r) => r.type === 'freed');
  t.ok(
    freed.some((r) => r.kind === 'blob'),
    "--prune frees v2's own blobs",
  );
  t.notOk(
    freed.some((r) => r.kind === 'layer'),
    'no layer dir of the container goes',
  );
  t.match(forced.records.at(-1), { type: 'total' });
  t.match(forced.stderr, /Total reclaimed space: /);
  const layers = JSON.parse(rootfs.stdout).layerDirs as string[];
  t.ok(
    layers.every((dir) => existsSync(dir)),
    'the container keeps its layer dirs',
  );
  t.equal(runToolSync('ctr-rm', ['--root', root, id]).code, 0);
  const after = await rm(root, ['--prune'], '');
  t.equal(after.code, 0, after.stderr);
  t.ok(
    after.records.some((r) => r.type === 'freed' && r.kind === 'layer'),
    'with the container gone its layers go',
  );
});
