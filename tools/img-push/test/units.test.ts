/**
 * img-push's pure parts, table-driven, without a registry: the manifest
 * media type to PUT with,
 * where blobs may be mounted from
 * (MountSources, its store scan skipping junk entries), and the per-reference
 * exit policy (pushEach: first failure's code, passthrough order, --to once).
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { Store } from '@conveyor/lib-common/store';
import { busyboxLayout, importToStore } from '../../../test/helpers/fixtures.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { argumentItems, referenceOf, type ReferenceItem } from '@conveyor/lib-common/reference-input';
import { MAX_MOUNT_SOURCES, MountSources } from '../src/mounts.js';
import { manifestMediaType } from '../src/plan.js';
import { PUSHABLE_TYPES, pushEach } from '../src/push-each.js';
import type { PushResult } from '../src/push.js';

t.test('manifestMediaType: the declared one, else the store entry, else by shape', async (t) => {
  const docker = 'application/vnd.docker.distribution.manifest.v2+json';
  const cases: [Record<string, unknown>, string | undefined, string][] = [
    [{ mediaType: docker }, 'application/vnd.oci.image.manifest.v1+json', docker],
    [{}, docker, docker],
    [{ mediaType: '' }, undefined, 'application/vnd.oci.image.manifest.v1+json'],
    [{ manifests: [] }, undefined, 'application/vnd.oci.image.index.v1+json'],
    [{ config: {} }, undefined, 'application/vnd.oci.image.manifest.v1+json'],
  ];
  for (const [parsed, declared, expected] of cases) t.equal(manifestMediaType(parsed, declared), expected, JSON.stringify([parsed, declared]));
});

t.test('the records img-push takes a reference from: image, tag, reference, ref, or untyped', async (t) => {
  for (const type of ['image', 'tag', 'reference', 'ref', undefined]) t.equal(referenceOf({ type, ref: 'a:1' }, PUSHABLE_TYPES), 'a:1', String(type));
  // A repository names no image to push; the run path's records pass through.
  for (const type of ['repository', 'layer', 'rootfs', 'mount', 'container']) t.equal(referenceOf({ type, ref: 'a:1' }, PUSHABLE_TYPES), undefined, type);
});

t.test('MountSources', async (t) => {
  const m = new MountSources();
  m.add('r', 'a', ['d1', 'd2']);
  m.add('r', 'b', ['d1']);
  m.add('other', 'c', ['d1']);
  t.same(m.sources('r', 'a', 'd1'), ['b'], 'never the repository itself; only this registry');
  t.same(m.sources('r', 'z', 'd1'), ['a', 'b']);
  t.same(m.sources('r', 'z', 'd3'), []);
  for (let i = 0; i < 10; i++) m.add('r', `many${i}`, ['d9']);
  t.equal(m.sources('r', 'z', 'd9').length, MAX_MOUNT_SOURCES, 'capped');

  const root = tempStore('conveyor-push-units-');
  t.teardown(() => removeStore(root));
  importToStore(`${busyboxLayout()}:latest`, root, '127.0.0.1:5000/team/app:1');
  importToStore(`${busyboxLayout()}:v2`, root, 'docker.io/library/app:v2');
  const file = join(root, 'index.json');
  const index = JSON.parse(readFileSync(file, 'utf8'));
  const entry = index.manifests[0];
  const manifest = JSON.parse(readFileSync(join(root, 'blobs', 'sha256', entry.digest.slice(7)), 'utf8'));
  // Junk beside the good entry: a bad name, a digest with no blob.
  index.manifests.push({ ...entry, annotations: { 'org.opencontainers.image.ref.name': 'NOT A REF' } });
  index.manifests.push({ ...entry, digest: `sha256:${'0'.repeat(64)}`, annotations: { 'org.opencontainers.image.ref.name': '127.0.0.1:5000/ghost/app:1' } });
  writeFileSync(file, JSON.stringify(index));
  const scan = new MountSources();
  await scan.scanStore(new Store(root), '127.0.0.1:5000');
  t.same(scan.sources('127.0.0.1:5000', 'other/app', manifest.layers[0].digest), ['team/app']);
  t.same(scan.sources('127.0.0.1:5000', 'other/app', manifest.config.digest), ['team/app']);
  t.same(scan.sources('docker.io', 'x', manifest.layers[0].digest), [], 'only the scanned registry');
});

t.test('pushEach: the others still run, the first failure wins, passthrough keeps its place', async (t) => {
  const ok = (ref: string): PushResult => ({
    record: { type: 'image', v: 1, ref, digest: 'sha256:x' } as PushResult['record'],
    counts: { exists: 0, mounted: 0, uploaded: 1 },
    uploadedBytes: 10,
  });
  const cases: { items: ReferenceItem[]; fail: Record<string, ConveyorError | Error>; code: number; written: string[] }[] = [
    { items: argumentItems(['a', 'b']), fail: {}, code: 0, written: [] },
    { items: argumentItems(['a', 'b']), fail: { a: new ConveyorError('ERR_IMAGE_NOT_FOUND', 'no a') }, code: 1, written: [] },
    {
      items: argumentItems(['a', 'b']),
      fail: { a: new ConveyorError('ERR_REF_INVALID', 'bad'), b: new ConveyorError('ERR_REGISTRY_UNAVAILABLE', 'down') },
      code: 2,
      written: [],
    },
    { items: argumentItems(['a']), fail: { a: new Error('bug') }, code: 1, written: [] },
    {
      items: [{ kind: 'passthrough', record: { type: 'layer', n: 1 } }, ...argumentItems(['a']), { kind: 'passthrough', record: { type: 'layer', n: 2 } }],
      fail: {},
      code: 0,
      written: ['layer', 'layer'],
    },
  ];
  for (const c of cases) {
    const pushed: string[] = [];
    const errors: string[] = [];
    const written: string[] = [];
    const code = await pushEach(c.items, {
      push: async (ref) => {
        pushed.push(ref);
        if (c.fail[ref]) throw c.fail[ref];
        return ok(ref);
      },
      write: async (record) => void written.push(String(record.type)),
      error: (e) => void errors.push(e.code),
    });
    t.equal(code, c.code, JSON.stringify(Object.keys(c.fail)));
    t.same(
      pushed,
      c.items.flatMap((i) => (i.kind === 'ref' ? [i.ref] : [])),
      'every reference tried',
    );
    t.same(written, c.written);
    t.equal(errors.length, Object.keys(c.fail).length);
  }
  await t.rejects(
    pushEach(argumentItems(['a', 'b']), { push: async (ref) => ok(ref), write: async () => undefined, error: () => undefined, renaming: true }),
    { code: 'ERR_USAGE' },
    '--to with a second reference',
  );
});
