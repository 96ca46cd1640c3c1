/**
 * img-push with the images built by buildah and debootstrap in
 * ../shared/images (skipped when the folder is absent): the OCI index of
 * busybox-index goes up whole (platform manifest by digest, then the index
 * under the tag) and img-fetch pulls it back into an empty store with the
 * same index and manifest digests; app:v2 pushed after app:v1 to the same
 * repository uploads only its own top layer (the two shared ones are there).
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasSharedImages, importToStore, SHARED_IMAGES } from '../../../test/helpers/fixtures.js';
import { rawManifest, startRegistry } from '../../../test/helpers/registry.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';

if (!hasSharedImages) {
  t.plan(0, `no shared images at ${SHARED_IMAGES}`);
} else {
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config' };
  const reg = await startRegistry();
  t.teardown(() => reg.stop());
  const root = tempStore('conveyor-push-shared-');
  t.teardown(() => removeStore(root));

  t.test('busybox-index: the index and its manifest go up; img-fetch reads them back', async (t) => {
    // --all keeps the index (skopeo otherwise stores this host's manifest alone).
    execFileSync('skopeo', ['copy', '-q', '--all', `oci:${join(SHARED_IMAGES, 'busybox-index')}:index`, `oci:${root}:docker.io/library/bbi:index`]);
    const entry = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')).manifests.find(
      (m: any) => m.annotations['org.opencontainers.image.ref.name'] === 'docker.io/library/bbi:index',
    );
    t.equal(entry.mediaType, 'application/vnd.oci.image.index.v1+json');
    const child = JSON.parse(readFileSync(join(root, 'blobs', 'sha256', entry.digest.slice(7)), 'utf8')).manifests[0];
    const pushed = await runTool('img-push', ['--root', root, '--log-format=json', '--to', `${reg.host}/shared/bbi:1`, 'bbi:index'], { env });
    t.equal(pushed.code, 0, pushed.stderr);
    t.match(pushed.records[0], { ref: `${reg.host}/shared/bbi:1`, indexDigest: entry.digest, digest: child.digest });
    t.equal((await rawManifest(reg, 'shared/bbi:1')).digest, entry.digest);

    const fresh = tempStore('conveyor-push-shared-back-');
    t.teardown(() => removeStore(fresh));
    const fetched = await runTool('img-fetch', ['--root', fresh, '--no-layers', '--platform', 'linux/amd64', `${reg.host}/shared/bbi:1`], { env });
    t.equal(fetched.code, 0, fetched.stderr);
    t.match(fetched.records[0], { indexDigest: entry.digest, digest: child.digest });
  });

  t.test('app:v2 after app:v1: only the top layer is uploaded', async (t) => {
    importToStore(`${join(SHARED_IMAGES, 'app')}:v1`, root, 'docker.io/library/app:v1');
    importToStore(`${join(SHARED_IMAGES, 'app')}:v2`, root, 'docker.io/library/app:v2');
    const v1 = await runTool('img-push', ['--root', root, '--log-format=json', '--to', `${reg.host}/shared/app:v1`, 'app:v1'], { env });
    t.equal(v1.code, 0, v1.stderr);
    const mark = reg.logs().length;
    const v2 = await runTool('img-push', ['--root', root, '--log-format=json', '--to', `${reg.host}/shared/app:v2`, 'app:v2'], { env });
    t.equal(v2.code, 0, v2.stderr);
    // Config and top layer are v2's own; the debian and middle layers are there already.
    t.match(v2.logs.find((l) => /pushed/.test(l.message ?? ''))?.message, /2 blobs uploaded \(\d+ bytes\), 0 mounted, 2 already there/);
    t.equal(
      (
        reg
          .logs()
          .slice(mark)
          .match(/"PUT \/v2\/shared\/app\/blobs\/uploads\//g) ?? []
      ).length,
      2,
    );
  });
}
