/**
 * A store on a small, real ext4 file system (loop-mounted, test/helpers/loopfs.ts)
 * that runs out of space: a pull (img-fetch of the 30 MB debian from a real
 * registry, and the registry client's ingest writing into a full disk), an
 * unpack (layer-unpack of busybox into less than its 2 MB) and a build
 * (img-build COPY of a big file, and a RUN whose layer does not fit) each fail
 * with ERR_STORE_IO naming the store path and ENOSPC, exit 1, and leave
 * nothing half-written: every blob hashes to its name, no layer is marked
 * complete, no index entry names the failed image, no temporary file is left,
 * and img-fsck finds the store clean. After the space is freed (the filler
 * file removed) the same command succeeds. Root only (mount).
 */
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConveyorError } from '../lib-common/dist/errors.js';
import { Store } from '../lib-common/dist/store.js';
import { fetchBlobToStore } from '../lib-common/registry/dist/blob.js';
import { RegistryClient } from '../lib-common/registry/dist/client.js';
import { busyboxLayout, SHARED_IMAGES } from './helpers/fixtures.js';
import { loopFilesystem } from './helpers/loopfs.js';
import { pushImage, startRegistry, type TestRegistry } from './helpers/registry.js';
import { runTool, type ToolResult } from './helpers/tools.js';

const MB = 1_000_000;
let reg: TestRegistry;

t.before(async () => {
  reg = await startRegistry();
  await Promise.all([pushImage(`${SHARED_IMAGES}/debian:bookworm-slim`, reg, 'debian:slim'), pushImage(`${busyboxLayout()}:latest`, reg, 'busybox:latest')]);
});
t.teardown(() => reg?.stop());

/** Every file under `dir`, recursively (relative paths). */
function walk(dir: string, prefix = ''): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? [`${prefix}${e.name}/`, ...walk(join(dir, e.name), `${prefix}${e.name}/`)] : [`${prefix}${e.name}`],
  );
}

/** The failure says ERR_STORE_IO, ENOSPC in words, and a path in the store; exit 1. */
function failsWithNoSpace(t: Tap.Test, r: ToolResult, root: string, what: string): void {
  t.equal(r.code, 1, `${what}: exit 1`);
  // The error record on stdout, or (a tool that writes none there, img-build -t) the JSON log line.
  const error = r.errors[0] ?? r.logs.find((line) => line.code);
  t.equal(error?.code, 'ERR_STORE_IO', `${what}: ERR_STORE_IO`);
  t.match(error?.message, /no space left on device \(ENOSPC\)/, `${what}: says ENOSPC`);
  t.ok(error?.message.includes(root), `${what}: names the path in the store (${error?.message})`);
  t.match(r.stderr, /no space left on device/, `${what}: on stderr too`);
}

/**
 * Nothing half-written: each blob hashes to its name, no staging, ingest or
 * temporary file, no layer dir but complete ones, no index entry for
 * `absent`, and img-fsck finds nothing.
 */
async function nothingHalfWritten(t: Tap.Test, root: string, absent?: string): Promise<void> {
  const blobs = join(root, 'blobs', 'sha256');
  for (const name of existsSync(blobs) ? readdirSync(blobs) : []) {
    t.match(name, /^[a-f0-9]{64}$/, `blobs/sha256/${name} is a digest, not a temporary file`);
    const actual = createHash('sha256')
      .update(readFileSync(join(blobs, name)))
      .digest('hex');
    t.equal(actual, name, `blobs/sha256/${name.slice(0, 12)} hashes to its name`);
  }
  t.strictSame(
    walk(root).filter((p) => /\.tmp$|\/\.tmp-|^layers\/\.|^tmp\/./.test(p)),
    [],
    'no temporary or staging file',
  );
  t.strictSame(
    walk(join(root, 'ingest')).filter((p) => !p.endsWith('/')),
    [],
    'no partial download',
  );
  for (const layer of existsSync(join(root, 'layers')) ? readdirSync(join(root, 'layers')) : []) {
    t.ok(existsSync(join(root, 'layers', layer, 'meta.json')), `layers/${layer.slice(0, 12)} is complete`);
  }
  if (absent) {
    const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8'));
    t.notOk(JSON.stringify(index).includes(absent), `index.json has no entry for ${absent}`);
  }
  const fsck = await runTool('img-fsck', ['--root', root]);
  t.equal(fsck.code, 0, `img-fsck: clean (${fsck.stdout.trim()} ${fsck.stderr.trim()})`);
  t.strictSame(
    fsck.records.filter((r) => r.type === 'problem'),
    [],
    'img-fsck: no problem',
  );
}

t.test('img-fetch: a pull that does not fit; the registry ingest on a full disk; then it fits', async (t) => {
  const fs = loopFilesystem(t, 96);
  const root = join(fs.dir, 'store');
  const debian = `${reg.host}/debian:slim`;
  fs.leaveFree(20 * MB);
  const r = await runTool('img-fetch', ['--root', root, debian]);
  failsWithNoSpace(t, r, root, 'img-fetch');
  await nothingHalfWritten(t, root, debian);

  // The ingest itself when the disk fills under it (no precheck: another writer took the space meanwhile).
  const manifest = JSON.parse(readFileSync(join(SHARED_IMAGES, 'debian', 'blobs', 'sha256', debianManifestHex()), 'utf8'));
  const layer = manifest.layers[0];
  const client = new RegistryClient({ plainHttp: true });
  t.teardown(() => client.close());
  const store = new Store(root);
  const error = await fetchBlobToStore(client, store, { registry: reg.host, repository: 'debian' }, layer, { freeSpace: async () => undefined }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(error instanceof ConveyorError, 'the ingest fails');
  t.match(error, { code: 'ERR_STORE_IO', message: new RegExp(`cannot write ${join(root, 'ingest')}/[a-f0-9]{64}: no space left on device \\(ENOSPC\\)`) });
  t.notOk(await store.hasBlob(layer.digest), 'no blob under the digest');
  await nothingHalfWritten(t, root, debian);

  fs.removeFiller();
  const again = await runTool('img-fetch', ['--root', root, debian]);
  t.equal(again.code, 0, `with space, the pull succeeds: ${again.stderr}`);
  t.ok(await store.hasBlob(layer.digest, layer.size));
  await nothingHalfWritten(t, root);
});

t.test('layer-unpack: a layer larger than the space left; then it fits', async (t) => {
  const fs = loopFilesystem(t, 32);
  const root = join(fs.dir, 'store');
  const fetch = await runTool('img-fetch', ['--root', root, `${reg.host}/busybox:latest`]);
  t.equal(fetch.code, 0, fetch.stderr);
  // busybox unpacks to about 2 MB.
  fs.leaveFree(0.5 * MB);
  const r = await runTool('layer-unpack', ['--root', root], { input: fetch.stdout });
  failsWithNoSpace(t, r, root, 'layer-unpack');
  t.match(r.errors[0]?.message, /cannot unpack layer sha256:[a-f0-9]{64} into .*\/layers\/[a-f0-9]{64}/, 'names the layer and its directory');
  t.strictSame(readdirSync(join(root, 'layers')), [], 'no layer directory, complete or not');
  await nothingHalfWritten(t, root);

  fs.removeFiller();
  const again = await runTool('layer-unpack', ['--root', root], { input: fetch.stdout });
  t.equal(again.code, 0, `with space, the unpack succeeds: ${again.stderr}`);
  t.equal(readdirSync(join(root, 'layers')).length, 1);
  await nothingHalfWritten(t, root);
});

t.test('img-build: a COPY of a big file, a RUN whose layer does not fit; then the build succeeds', async (t) => {
  const fs = loopFilesystem(t, 100);
  const root = join(fs.dir, 'store');
  const context = t.testdir({
    'Dockerfile.copy': `FROM ${reg.host}/busybox:latest\nCOPY big /big\n`,
    'Dockerfile.run': `FROM ${reg.host}/busybox:latest\nRUN dd if=/dev/urandom of=/big bs=1M count=12 2>/dev/null\n`,
  });
  // Random bytes: gzip cannot shrink the layer under the space left.
  writeFileSync(join(context, 'big'), randomBytes(30 * MB));
  const build = (file: string, tag: string) => runTool('img-build', ['--root', root, '-q', '--log-format=json', '-f', join(context, file), '-t', tag, context]);
  // The base image first, with room: what fails below is the step's own write.
  const base = await runTool('img-fetch', ['--root', root, `${reg.host}/busybox:latest`]);
  t.equal(base.code, 0, base.stderr);

  fs.leaveFree(20 * MB);
  const copy = await build('Dockerfile.copy', 'copy:big');
  failsWithNoSpace(t, copy, root, 'img-build COPY');
  await nothingHalfWritten(t, root, 'copy:big');

  fs.leaveFree(20 * MB);
  const run = await build('Dockerfile.run', 'run:big');
  failsWithNoSpace(t, run, root, 'img-build RUN');
  t.match(run.logs.find((line) => line.code)?.message, /cannot pack /, 'the packed layer did not fit');
  await nothingHalfWritten(t, root, 'run:big');
  t.strictSame(readdirSync(join(root, 'containers')), [], 'no step container left');

  fs.removeFiller();
  const again = await build('Dockerfile.copy', 'copy:big');
  t.equal(again.code, 0, `with space, the build succeeds: ${again.stderr}`);
  await nothingHalfWritten(t, root);
});

/** The debian layout's manifest (its index.json's one entry). */
function debianManifestHex(): string {
  const index = JSON.parse(readFileSync(join(SHARED_IMAGES, 'debian', 'index.json'), 'utf8'));
  return index.manifests[0].digest.slice(7);
}
