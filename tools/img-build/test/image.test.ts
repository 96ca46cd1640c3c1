/**
 * image.ts writeImage: an unchanged rebuild leaves index.json alone (no rewrite,
 * no fsync: Store.updateIndex writes only a change, lib-common/test/store.test.ts
 * has the table of index.json contents).
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { REF_NAME_ANNOTATION, Store } from '@conveyor/lib-common/store';
import { writeImage } from '../dist/image.js';
import { scratchState } from '../dist/config.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';

const A = 'localhost/a:latest';
const B = 'localhost/b:latest';

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
