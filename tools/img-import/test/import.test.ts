/**
 * img-import against archives written by independent tools: skopeo's
 * docker-archive: (legacy docker save layout, symlinked layer.tar) and
 * oci-archive:, from a file and streamed on stdin, and an OCI layout
 * directory. The imported image is listed by img-ls and unpacked by
 * layer-unpack into the same tree umoci unpacks from the original.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasSharedImages, SHARED_IMAGES } from '../../../test/helpers/fixtures.js';
import { tempStore, removeStore } from '../../../test/helpers/rootfs.js';
import { runTool, runToolSync } from '../../../test/helpers/tools.js';

if (!hasSharedImages) {
  t.skip('the shared images (/work/shared/images) are not here');
} else {
  const source = join(SHARED_IMAGES, 'busybox');
  const work = mkdtempSync('/tmp/conveyor-import-');
  const root = tempStore('conveyor-import-store-');
  t.teardown(() => {
    rmSync(work, { recursive: true, force: true });
    removeStore(root);
  });
  const env = { ...process.env, CONVEYOR_ROOT: root };
  const dockerArchive = join(work, 'docker.tar');
  const ociArchive = join(work, 'oci.tar');
  execFileSync('skopeo', ['copy', '-q', `oci:${source}:latest`, `docker-archive:${dockerArchive}:bb:docker`]);
  execFileSync('skopeo', ['copy', '-q', `oci:${source}:latest`, `oci-archive:${ociArchive}:latest`]);
  const original = join(work, 'original');
  execFileSync('umoci', ['raw', 'unpack', '--image', `${source}:latest`, original], { stdio: 'ignore' });
  const originalTree = tree(original);

  /** Unpacks `ref` with img-ls | layer-unpack --flatten and returns its tree. */
  const unpacked = (ref: string): string[] => {
    const dir = join(work, `flat-${ref.replace(/[^a-z0-9]/g, '_')}`);
    const listed = runToolSync('img-ls', [ref], { env });
    const flat = runToolSync('layer-unpack', ['--flatten', dir], { env, input: listed.rawStdout });
    if (flat.code !== 0) throw new Error(flat.stderr);
    return tree(dir);
  };

  t.test('docker-archive from a file: layer then image records, listed, same tree', async (t) => {
    const result = await runTool('img-import', [dockerArchive], { env });
    t.equal(result.code, 0, result.stderr);
    t.same(
      result.records.map((r) => r.type),
      ['layer', 'image'],
    );
    const [layer, image] = result.records;
    t.equal(image.ref, 'docker.io/library/bb:docker');
    t.match(layer, { index: 0, count: 1, ref: image.ref, store: root, diffID: image.layers[0].diffID });
    t.equal(layer.digest, layer.diffID, 'an uncompressed layer is stored under its diff ID');
    t.equal(runToolSync('img-ls', ['--refs'], { env }).stdout, 'docker.io/library/bb:docker\n');
    t.same(unpacked('bb:docker'), originalTree);
    // img-import | layer-unpack: its own records are what layer-unpack reads.
    const direct = join(work, 'direct');
    const flat = runToolSync('layer-unpack', ['--flatten', direct], { env, input: result.rawStdout });
    t.equal(flat.code, 0, flat.stderr);
    t.same(tree(direct), originalTree, 'img-import | layer-unpack --flatten');
    t.same(readdirSync(join(root, 'ingest')), [], 'nothing left in ingest/');
  });

  t.test("a dead importer's staging files are removed by the next import, a live one's kept", async (t) => {
    // As a SIGKILLed img-import leaves them (test/crash.test.ts kills real ones).
    const dead = join(root, 'ingest', 'import-999999999.1.abcd');
    const live = join(root, 'ingest', `import-${process.pid}.0.abcd`);
    writeFileSync(dead, 'staged by a crashed import');
    writeFileSync(live, 'staged by a running import');
    t.teardown(() => rmSync(live, { force: true }));
    const result = await runTool('img-import', ['--ref', 'swept:1', dockerArchive], { env });
    t.equal(result.code, 0, result.stderr);
    t.same(readdirSync(join(root, 'ingest')), [`import-${process.pid}.0.abcd`]);
  });

  t.test('docker-archive streamed on stdin, renamed with --ref', async (t) => {
    const result = await runTool('img-import', ['--ref', 'piped:1', '--progress=json'], { env, input: readFileSync(dockerArchive) });
    t.equal(result.code, 0, result.stderr);
    t.equal(result.records.at(-1)?.ref, 'docker.io/library/piped:1');
    t.ok(
      result.logs.some((l) => l.type === 'progress' && l.action === 'import' && l.phase === 'done'),
      'progress events for the 2 MB layer member',
    );
    // The store stays an OCI layout other tools read: skopeo sees the manifest img-import built.
    const raw = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', `oci:${root}:docker.io/library/piped:1`], { encoding: 'utf8' }));
    t.equal(raw.layers[0].digest, result.records[0].digest);
  });

  t.test('oci-archive: a bare tag needs --ref; with it the image imports', async (t) => {
    const bare = await runTool('img-import', [ociArchive], { env });
    t.equal(bare.code, 2);
    t.match(bare.stderr, /unnamed.*--ref/s);
    const result = await runTool('img-import', ['--ref', 'oci:archive', '-'], { env, input: readFileSync(ociArchive) });
    t.equal(result.code, 0, result.stderr);
    const image = result.records.at(-1)!;
    const manifest = JSON.parse(readFileSync(join(source, 'index.json'), 'utf8')).manifests[0];
    t.equal(image.digest, manifest.digest, 'the OCI manifest is stored as it came, same digest');
    t.same(unpacked('oci:archive'), originalTree);
  });

  t.test('an OCI layout directory, --no-layers', async (t) => {
    const result = await runTool('img-import', ['--no-layers', '--ref', 'dir:1', source], { env });
    t.equal(result.code, 0, result.stderr);
    t.same(
      result.records.map((r) => r.type),
      ['image'],
    );
    t.equal(runToolSync('img-ls', ['--refs', 'dir:1'], { env }).stdout, 'docker.io/library/dir:1\n');
  });

  t.test('a multi-platform index: the host platform is chosen; one it lacks is refused', async (t) => {
    const index = join(SHARED_IMAGES, 'busybox-index');
    const missing = await runTool('img-import', ['--ref', 'idx:arm', '--platform', 'linux/s390x', index], { env });
    t.equal(missing.code, 1);
    t.equal(missing.errors[0]?.code, 'ERR_PLATFORM_NOT_FOUND');
    const other = await runTool('img-import', ['--ref', 'idx:arm', '--platform', 'linux/s390x', source], { env });
    t.equal(other.errors[0]?.code, 'ERR_PLATFORM_NOT_FOUND', 'a single image of another platform, with --platform');
    t.equal(runToolSync('img-ls', ['--refs', 'idx:*'], { env }).stdout, '', 'nothing tagged');
    const chosen = await runTool('img-import', ['--ref', 'idx:amd64', '--platform', 'linux/amd64', '--no-layers', index], { env });
    t.equal(chosen.code, 0, chosen.stderr);
    t.match(chosen.records[0], { ref: 'docker.io/library/idx:amd64', platform: { os: 'linux', architecture: 'amd64' } });
  });

  t.test('usage: unknown flag, two files, a missing file, a bad --ref', async (t) => {
    t.equal(runToolSync('img-import', ['--bogus', dockerArchive], { env }).code, 2);
    t.equal(runToolSync('img-import', [dockerArchive, ociArchive], { env }).code, 2);
    t.equal(runToolSync('img-import', [join(work, 'absent.tar')], { env }).code, 2);
    t.equal(runToolSync('img-import', ['--ref', 'UPPER/Case:x', dockerArchive], { env }).code, 2);
    const help = runToolSync('img-import', ['--help'], { env });
    t.equal(help.code, 0);
    t.match(help.stdout, /Examples:/);
  });
}

/** Every entry of a tree: path, type, mode, owner, and content hash or link target. */
function tree(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, prefix)).sort()) {
    const rel = prefix ? `${prefix}/${name}` : name;
    const path = join(dir, rel);
    const info = lstatSync(path);
    const head = `${rel} ${(info.mode & 0o7777).toString(8)} ${info.uid}:${info.gid}`;
    if (info.isDirectory()) {
      out.push(`${head} dir`);
      out.push(...tree(dir, rel));
    } else if (info.isSymbolicLink()) out.push(`${head} -> ${readlinkSync(path)}`);
    else out.push(`${head} ${createHash('sha256').update(readFileSync(path)).digest('hex')}`);
  }
  return out;
}
