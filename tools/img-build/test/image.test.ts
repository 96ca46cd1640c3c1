/**
 * image.ts writeImage: an unchanged rebuild leaves index.json alone (no rewrite,
 * no fsync), and alreadyTagged, which decides that, says "nothing to write"
 * only where Store.tagManifest for each tag would indeed change nothing (a
 * table of index.json contents, each checked against tagManifest itself).
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { IMAGE_NAME_ANNOTATION, REF_NAME_ANNOTATION, Store } from '@conveyor/lib-common/store';
import type { Descriptor } from '@conveyor/lib-common/records';
import { alreadyTagged, writeImage } from '../dist/image.js';
import { scratchState } from '../dist/config.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';

const MEDIA = 'application/vnd.oci.image.manifest.v1+json';
const D: Descriptor = { mediaType: MEDIA, digest: `sha256:${'a'.repeat(64)}`, size: 100 };
const E: Descriptor = { mediaType: MEDIA, digest: `sha256:${'e'.repeat(64)}`, size: 200 };
const A = 'localhost/a:latest';
const B = 'localhost/b:latest';
const entry = (ref: string, d: Descriptor, extra: Record<string, string> = {}) => ({
  mediaType: d.mediaType,
  digest: d.digest,
  size: d.size,
  annotations: { ...extra, [REF_NAME_ANNOTATION]: ref, [IMAGE_NAME_ANNOTATION]: ref },
});

t.test('alreadyTagged is true only where tagManifest would change nothing', async (t) => {
  const root = tempStore();
  t.teardown(() => removeStore(root));
  const store = new Store(root);
  await store.init();
  const index = join(root, 'index.json');
  // [name, manifests in index.json, tags, expected]
  const cases: [string, unknown[], string[], boolean][] = [
    ['empty index', [], [A], false],
    ['tagged as asked', [entry(A, D)], [A], true],
    ['tagged, after other entries', [{ mediaType: MEDIA, digest: E.digest, size: E.size }, entry(B, E), entry(A, D)], [A], true],
    ['malformed entries before it are kept either way', [null, 'x', { digest: 1 }, entry(A, D)], [A], true],
    ['not last: tagging moves it', [entry(A, D), entry(B, E)], [A], false],
    ['another image under the name', [entry(A, E)], [A], false],
    ['another size', [entry(A, { ...D, size: 101 })], [A], false],
    ['an extra annotation', [entry(A, D, { 'org.example': 'x' })], [A], false],
    ['the name twice', [entry(A, D), entry(A, D)], [A], false],
    ['the name twice, apart', [entry(A, D), entry(B, E), entry(A, D)], [A], false],
    ['two tags in order', [entry(A, D), entry(B, D)], [A, B], true],
    ['two tags in the other order', [entry(B, D), entry(A, D)], [A, B], false],
    ['one of two tags missing', [entry(A, D)], [A, B], false],
    ['a tag given twice (conservative)', [entry(A, D)], [A, A], false],
    ['no tags', [entry(A, D)], [], false],
  ];
  for (const [name, manifests, tags, expected] of cases) {
    writeFileSync(index, JSON.stringify({ schemaVersion: 2, manifests }));
    const said = alreadyTagged((await store.readIndex()).manifests, tags, D);
    t.equal(said, expected, name);
    // The reference: what tagManifest does to this index.
    const before = JSON.stringify((await store.readIndex()).manifests);
    for (const tag of tags) await store.tagManifest(tag, D);
    const unchanged = JSON.stringify((await store.readIndex()).manifests) === before;
    if (said) t.ok(unchanged, `${name}: tagManifest changes nothing indeed`);
    else if (tags.length > 0 && new Set(tags).size === tags.length) t.notOk(unchanged, `${name}: tagManifest changes the index`);
  }
});

t.test('writeImage again, nothing changed: same image, index.json not rewritten; a new tag is written', async (t) => {
  const root = tempStore();
  t.teardown(() => removeStore(root));
  const store = new Store(root);
  const options = { store, state: scratchState(), tags: [A], labels: [] as [string, string][], created: '2026-01-01T00:00:00Z' };
  const first = await writeImage(options);
  const index = join(root, 'index.json');
  const written = statSync(index);
  const text = readFileSync(index, 'utf8');
  const second = await writeImage(options);
  t.strictSame(second, first, 'the same image and records');
  const after = statSync(index);
  t.equal(after.ino, written.ino, 'index.json not replaced');
  t.equal(readFileSync(index, 'utf8'), text);

  // Unnamed (no -t): listed once, and not rewritten the second time either.
  const unnamed = { ...options, tags: [], labels: [['x', 'y']] as [string, string][] };
  const third = await writeImage(unnamed);
  const listed = statSync(index);
  t.not(listed.ino, after.ino, 'a new unnamed image is written');
  await writeImage(unnamed);
  t.equal(statSync(index).ino, listed.ino, 'listed already: not rewritten');
  t.equal((await store.readIndex()).manifests.filter((m) => m.digest === third.manifestDescriptor.digest).length, 1);

  // Another tag for the same image is written.
  await writeImage({ ...options, tags: [B] });
  const tags = (await store.readIndex()).manifests.map((m) => m.annotations?.[REF_NAME_ANNOTATION]);
  t.strictSame(tags, [A, undefined, B]);
});
