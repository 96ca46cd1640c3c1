/**
 * The real images in ../shared/images (buildah/debootstrap), pushed by skopeo
 * into a test registry and pulled by img-fetch: busybox, busybox-index (an
 * OCI index), debian:bookworm-slim, and app:v1 + app:v2 (shared lower layers:
 * the second pull downloads only its top layer). Skips when the folder is absent.
 * Under strace, debian's 30 MB layer: datasyncs started while it downloads
 * (blob.ts's early write-back), and the durability order of docs/protocol.md
 * unchanged: the ingest file fsynced after its last write and before its
 * rename into blobs/, blobs/ fsynced after that, then the layer record.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasSharedImages, SHARED_IMAGES } from '../../../test/helpers/fixtures.js';
import { toolPath } from '../../../test/helpers/tools.js';
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

  t.test("debian's layer: datasyncs while it downloads; fsynced after its last write, renamed, blobs/ fsynced, then its record (strace)", async (t) => {
    const dir = t.testdir();
    const root = join(dir, 'store');
    const log = join(dir, 'strace.log');
    const run = spawnSync(
      'strace',
      [
        '-f',
        '-qq',
        '-y',
        '-s',
        '48',
        '-e',
        'trace=write,fsync,fdatasync,rename',
        '-o',
        log,
        process.execPath,
        toolPath('img-fetch'),
        '--root',
        root,
        `${reg.host}/debian:bookworm-slim`,
      ],
      { env: { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config' }, encoding: 'utf8' },
    );
    t.equal(run.status, 0, run.stderr);
    const records = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    t.strictSame(
      records.map((r) => r.type),
      ['download', 'layer', 'image'],
    );
    const layer = records[1];
    t.ok(layer.size > 8 * 1024 * 1024, 'a layer of several write-back steps');
    const hex = layer.digest.slice(7);
    const lines = readFileSync(log, 'utf8').split('\n');
    // strace -f: a call another thread interrupts ends on a later `<... NAME resumed>` line of the same pid.
    const ended = (i: number, name: string) => {
      if (!lines[i].includes('<unfinished')) return i;
      const pid = lines[i].split(' ')[0];
      return lines.findIndex((l, j) => j > i && l.startsWith(`${pid} `) && l.includes(`${name} resumed`));
    };
    const ingest = `<${root}/ingest/${hex}>`;
    const writes = lines.flatMap((l, i) => (/ write\(/.test(l) && l.includes(ingest) ? [i] : []));
    const lastWrite = writes.at(-1) ?? -1;
    const renamed = lines.findIndex((l) => / rename\(/.test(l) && l.includes(`"${root}/ingest/${hex}", "${root}/blobs/sha256/${hex}"`));
    const datasyncs = lines.flatMap((l, i) => (/ fdatasync\(/.test(l) && l.includes(ingest) ? [i] : []));
    const fsync = lines.findIndex((l, i) => i > lastWrite && / fsync\(/.test(l) && l.includes(ingest));
    const blobsSynced = lines.findIndex((l, i) => i > renamed && / fsync\(/.test(l) && l.includes(`<${root}/blobs/sha256>`));
    const record = lines.findIndex((l) => / write\(1</.test(l) && l.includes('type\\":\\"layer'));
    t.ok(writes.length > 1 && renamed > lastWrite, `written (${writes.length} writes), then renamed into blobs/`);
    t.ok(
      datasyncs.some((i) => i < lastWrite),
      `a datasync started before the last write (${datasyncs.length} in all)`,
    );
    t.ok(fsync > lastWrite && ended(fsync, 'fsync') < renamed, 'fsynced after the last write, done before the rename');
    t.ok(
      datasyncs.every((i) => ended(i, 'fdatasync') >= 0 && ended(i, 'fdatasync') < renamed),
      'every datasync done before the rename',
    );
    t.ok(blobsSynced > renamed && ended(blobsSynced, 'fsync') < record, 'blobs/ fsynced after the rename, before the layer record');
    t.ok(record > renamed, 'the record printed after');
    const announced = lines.findIndex((l) => / write\(1</.test(l) && l.includes('type\\":\\"download'));
    t.ok(announced >= 0 && announced < record, 'the download record printed before the layer record');
  });
}
