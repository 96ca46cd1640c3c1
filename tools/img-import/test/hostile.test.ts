/**
 * Hostile and broken archives: each one is refused with its own error code,
 * and the store is left exactly as it was (no new blob, no reference, nothing
 * left in ingest/). Archives are built here with tar-stream, as an attacker
 * would, around a small valid docker save image.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { tempStore, removeStore } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';
import { Readable } from 'node:stream';
import { Store } from '@conveyor/lib-common/store';
import { normalizeMemberName, Staging } from '../src/stage.js';

interface Member {
  name: string;
  data?: Buffer | string;
  type?: 'file' | 'symlink' | 'directory';
  linkname?: string;
}

function tarOf(members: Member[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (chunk: Buffer) => chunks.push(chunk));
  const done = new Promise<Buffer>((resolve) => p.on('end', () => resolve(Buffer.concat(chunks))));
  for (const m of members) {
    if (m.type === 'symlink' || m.type === 'directory') p.entry({ name: m.name, type: m.type, linkname: m.linkname });
    else p.entry({ name: m.name }, Buffer.from(m.data ?? ''));
  }
  p.finalize();
  return done;
}

const hex = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

const root = tempStore('conveyor-import-hostile-');
t.teardown(() => removeStore(root));
const env = { ...process.env, CONVEYOR_ROOT: root };

let layer: Buffer;
let config: string;
/** A valid docker save archive of one tiny layer, with the members given replacing or joining its own. */
async function dockerSave(change: (members: Member[]) => Member[] = (m) => m): Promise<Buffer> {
  const members: Member[] = [
    { name: 'abc/layer.tar', data: layer },
    { name: `${hex(config)}.json`, data: config },
    { name: 'manifest.json', data: JSON.stringify([{ Config: `${hex(config)}.json`, RepoTags: ['evil:1'], Layers: ['abc/layer.tar'] }]) },
  ];
  return tarOf(change(members));
}

/** What the store holds: blob names, index.json, ingest/ entries. */
function snapshot(): string {
  const list = (dir: string) => (existsSync(dir) ? readdirSync(dir).sort().join(',') : '');
  return [list(join(root, 'blobs', 'sha256')), readFileSync(join(root, 'index.json'), 'utf8'), list(join(root, 'ingest'))].join('\n');
}

t.before(async () => {
  layer = await tarOf([{ name: 'hello.txt', data: 'hello\n' }]);
  config = JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [`sha256:${hex(layer)}`] } });
  // The store starts with one image, so "unchanged" is checked against a store that has content.
  const ok = await runTool('img-import', ['--ref', 'good:1'], { env, input: await dockerSave() });
  if (ok.code !== 0) throw new Error(ok.stderr);
});

const refusals: [string, () => Promise<Buffer>, string[], string][] = [
  ['not a tar at all', async () => Buffer.from('this is not an archive\n'.repeat(40)), [], 'ERR_MANIFEST_INVALID'],
  ['an empty stream', async () => Buffer.alloc(0), [], 'ERR_MANIFEST_INVALID'],
  ['a truncated archive', async () => (await dockerSave()).subarray(0, 1536), [], 'ERR_MANIFEST_INVALID'],
  ['a manifest naming a missing layer', () => dockerSave((m) => m.filter((x) => x.name !== 'abc/layer.tar')), [], 'ERR_MANIFEST_INVALID'],
  [
    'a layer whose content does not match the diff ID',
    () => dockerSave((m) => m.map((x) => (x.name === 'abc/layer.tar' ? { ...x, data: Buffer.concat([layer, Buffer.alloc(512)]) } : x))),
    [],
    'ERR_DIGEST_MISMATCH',
  ],
  [
    'a config named by a digest it does not hold',
    () =>
      dockerSave((m) => [
        { name: `${'0'.repeat(64)}.json`, data: config },
        ...m.filter((x) => !x.name.endsWith('.json')),
        { name: 'manifest.json', data: JSON.stringify([{ Config: `${'0'.repeat(64)}.json`, RepoTags: ['evil:1'], Layers: ['abc/layer.tar'] }]) },
      ]),
    [],
    'ERR_DIGEST_MISMATCH',
  ],
  [
    'a blob named by a digest it does not hold',
    () => dockerSave((m) => [{ name: `blobs/sha256/${'1'.repeat(64)}`, data: 'x' }, ...m]),
    [],
    'ERR_DIGEST_MISMATCH',
  ],
  ['a member named ../escape', () => dockerSave((m) => [{ name: '../escape', data: 'x' }, ...m]), [], 'ERR_LAYER_MALICIOUS'],
  ['a member with an absolute name', () => dockerSave((m) => [{ name: '/etc/passwd', data: 'x' }, ...m]), [], 'ERR_LAYER_MALICIOUS'],
  [
    'a symlink climbing out of the archive',
    () => dockerSave((m) => [{ name: 'abc/layer.tar', type: 'symlink', linkname: '../../../etc/passwd' }, ...m.filter((x) => x.name !== 'abc/layer.tar')]),
    [],
    'ERR_LAYER_MALICIOUS',
  ],
  ['a member over --max-blob-size', () => dockerSave(), ['--max-blob-size', '1K'], 'ERR_LAYER_TOO_LARGE'],
  [
    'a bomb: a header declaring 5 GB',
    async () => declaredSize(await tarOf([{ name: 'bomb', data: 'x' }]), 5e9),
    ['--max-blob-size', '1G'],
    'ERR_LAYER_TOO_LARGE',
  ],
  [
    'manifest.json that is not JSON',
    () => dockerSave((m) => m.map((x) => (x.name === 'manifest.json' ? { ...x, data: '[{' } : x))),
    [],
    'ERR_MANIFEST_INVALID',
  ],
  ['a tar with neither manifest.json nor index.json', () => tarOf([{ name: 'hello', data: 'hi' }]), [], 'ERR_MANIFEST_INVALID'],
  [
    'an OCI layout whose manifest names a missing blob',
    () =>
      tarOf([
        { name: 'oci-layout', data: '{"imageLayoutVersion":"1.0.0"}' },
        {
          name: 'index.json',
          data: JSON.stringify({
            schemaVersion: 2,
            manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'2'.repeat(64)}`, size: 10 }],
          }),
        },
      ]),
    ['--ref', 'x:1'],
    'ERR_MANIFEST_INVALID',
  ],
];

for (const [what, build, args, code] of refusals) {
  t.test(`refused: ${what}`, async (t) => {
    const before = snapshot();
    const result = await runTool('img-import', args, { env, input: await build() });
    t.equal(result.code, code === 'ERR_USAGE' ? 2 : 1, result.stderr);
    t.equal(result.errors[0]?.code, code, result.stderr);
    t.equal(result.records.length, 0, 'no record');
    t.equal(snapshot(), before, 'store unchanged');
  });
}

t.test('accepted: Docker 25+ layout (blobs/sha256 members) with a gzip layer, two RepoTags', async (t) => {
  const gz = gzipSync(layer);
  const members: Member[] = [
    { name: 'blobs/', type: 'directory' },
    { name: `blobs/sha256/${hex(gz)}`, data: gz },
    { name: `blobs/sha256/${hex(config)}`, data: config },
    {
      name: 'manifest.json',
      data: JSON.stringify([{ Config: `blobs/sha256/${hex(config)}`, RepoTags: ['new:1', 'new:2'], Layers: [`blobs/sha256/${hex(gz)}`] }]),
    },
  ];
  const result = await runTool('img-import', [], { env, input: await tarOf(members) });
  t.equal(result.code, 0, result.stderr);
  t.same(
    result.records.map((r) => `${r.type} ${r.ref}`),
    ['layer docker.io/library/new:1', 'image docker.io/library/new:1', 'layer docker.io/library/new:2', 'image docker.io/library/new:2'],
  );
  t.match(result.records[0], { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${hex(gz)}`, diffID: `sha256:${hex(layer)}` });
  t.ok(existsSync(join(root, 'blobs', 'sha256', hex(gz))), 'the gzip blob is stored as it came');
});

t.test('Staging: too many members, oversized metadata; discard leaves ingest/ empty', async (t) => {
  const store = new Store(root);
  const many = await tarOf(Array.from({ length: 5 }, (_, i) => ({ name: `m${i}`, data: 'x' })));
  const staging = new Staging({ store, maxSize: 1e9, maxMembers: 3 });
  await t.rejects(staging.fromTar(Readable.from([many])), { code: 'ERR_MANIFEST_INVALID', message: /more than 3 members/ });
  await staging.discard();
  const huge = declaredSize(await tarOf([{ name: 'manifest.json', data: '[]' }]), 9 * 1024 * 1024);
  const second = new Staging({ store, maxSize: 1e9 });
  await t.rejects(second.fromTar(Readable.from([huge])), { code: 'ERR_MANIFEST_INVALID', message: /manifest.json is 9437184 bytes/ });
  await second.discard();
  t.same(readdirSync(join(root, 'ingest')), []);
});

t.test('normalizeMemberName', async (t) => {
  const good: [string, string][] = [
    ['manifest.json', 'manifest.json'],
    ['./manifest.json', 'manifest.json'],
    ['blobs//sha256/ab', 'blobs/sha256/ab'],
    ['abc/layer.tar', 'abc/layer.tar'],
    ['dir/', 'dir'],
  ];
  for (const [input, want] of good) t.equal(normalizeMemberName(input), want, input);
  for (const bad of ['/etc/passwd', '../x', 'a/../../x', 'a\0b', '.', './']) {
    t.throws(() => normalizeMemberName(bad), { code: 'ERR_LAYER_MALICIOUS' }, JSON.stringify(bad));
  }
});

/** Rewrites the first header's size field (octal, with its checksum): the body stays one block. */
function declaredSize(tar: Buffer, size: number): Buffer {
  const out = Buffer.from(tar);
  out.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'ascii');
  out.fill(' ', 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += out[i];
  out.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return out;
}
