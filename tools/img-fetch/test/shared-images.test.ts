/**
 * The real images in ../shared/images (buildah/debootstrap), pushed by skopeo
 * into a test registry and pulled by img-fetch: busybox, busybox-index (an
 * OCI index), debian:bookworm-slim, and app:v1 + app:v2 (shared lower layers:
 * the second pull downloads only its top layer). Skips when the folder is absent.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasSharedImages, SHARED_IMAGES } from '../../../test/helpers/fixtures.js';
import { pushImage, startRegistry, type TestRegistry } from '../../../test/helpers/registry.js';
import { runFetch } from './run.js';

if (!hasSharedImages) {
  t.plan(0, `no shared images at ${SHARED_IMAGES}`);
} else {
  let reg: TestRegistry;
  t.before(async () => {
    reg = await startRegistry();
    await Promise.all([
      pushImage(`${join(SHARED_IMAGES, 'busybox')}:latest`, reg, 'busybox:latest'),
      pushImage(`${join(SHARED_IMAGES, 'busybox-index')}:index`, reg, 'busybox-index:index', undefined, { all: true }),
      pushImage(`${join(SHARED_IMAGES, 'debian')}:bookworm-slim`, reg, 'debian:bookworm-slim'),
      // One after the other: v1 and v2 share blobs in one repository, and distribution answers 500
      // to a blob HEAD while a concurrent upload of that blob is being committed (seen under load).
      pushImage(`${join(SHARED_IMAGES, 'app')}:v1`, reg, 'app:v1').then(() => pushImage(`${join(SHARED_IMAGES, 'app')}:v2`, reg, 'app:v2')),
    ]);
  });
  t.teardown(() => reg?.stop());

  /** The digest a layout's index.json gives a tag. */
  const layoutDigest = (layout: string, tag: string): string => {
    const index = JSON.parse(readFileSync(join(SHARED_IMAGES, layout, 'index.json'), 'utf8'));
    return index.manifests.find((m: { annotations?: Record<string, string> }) => m.annotations?.['org.opencontainers.image.ref.name'] === tag).digest;
  };

  const cases: { layout: string; tag: string; name: string; index?: boolean }[] = [
    { layout: 'busybox', tag: 'latest', name: 'busybox:latest' },
    { layout: 'busybox-index', tag: 'index', name: 'busybox-index:index', index: true },
    { layout: 'debian', tag: 'bookworm-slim', name: 'debian:bookworm-slim' },
  ];
  for (const c of cases) {
    t.test(`${c.layout}:${c.tag}`, async (t) => {
      const root = t.testdir();
      const ref = `${reg.host}/${c.name}`;
      const r = await runFetch(['--root', root, ref]);
      t.equal(r.code, 0, r.stderr);
      const image = r.records.at(-1)!;
      t.equal(image.type, 'image');
      const expected = layoutDigest(c.layout, c.tag);
      if (c.index) t.equal(image.indexDigest, expected, 'the index digest of the layout');
      else t.equal(image.digest, expected, 'the manifest digest of the layout');
      for (const layer of image.layers) {
        const path = join(root, 'blobs', 'sha256', layer.digest.slice(7));
        t.equal(`sha256:${createHash('sha256').update(readFileSync(path)).digest('hex')}`, layer.digest);
      }
      t.equal(r.records.filter((x) => x.type === 'layer').length, image.layers.length);
      const inspect = JSON.parse(execFileSync('skopeo', ['inspect', `oci:${root}:${ref}`], { encoding: 'utf8' }));
      t.equal(inspect.Digest, image.digest, 'skopeo reads it');
    });
  }

  t.test('app:v1 then app:v2 downloads only the top layer of v2', async (t) => {
    const root = t.testdir();
    const r1 = await runFetch(['--root', root, `${reg.host}/app:v1`]);
    t.equal(r1.code, 0, r1.stderr);
    const v1 = r1.records.at(-1)!;
    const counts = v1.layers.map((l: { digest: string }) => reg.blobGets(l.digest));
    const r2 = await runFetch(['--root', root, `${reg.host}/app:v2`]);
    t.equal(r2.code, 0, r2.stderr);
    const v2 = r2.records.at(-1)!;
    t.equal(v2.layers.length, 3);
    t.strictSame(
      v2.layers.slice(0, 2).map((l: { digest: string }) => l.digest),
      v1.layers.slice(0, 2).map((l: { digest: string }) => l.digest),
      'the lower two layers are shared',
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    t.strictSame(
      v1.layers.slice(0, 2).map((l: { digest: string }) => reg.blobGets(l.digest)),
      counts.slice(0, 2),
      'shared layers were not downloaded again',
    );
    t.equal(reg.blobGets(v2.layers[2].digest), 1, 'the top layer was downloaded once');
    t.match(r2.stderr, /1 of 3 layers downloaded/);
  });
}
