import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hasSharedImages, importToStore, SHARED_IMAGES } from '../../../test/helpers/fixtures.js';
import { runTool, toolPath } from '../../../test/helpers/tools.js';
import { startDockerd } from '../../../test/helpers/dockerd.js';

const execFileAsync = promisify(execFile);

if (!hasSharedImages) {
  t.skip('the shared images in /work/shared/images are not there');
} else {
  const work = mkdtempSync('/tmp/conveyor-export-');
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const root = join(work, 'store');
  importToStore(`${join(SHARED_IMAGES, 'busybox')}:latest`, root, 'docker.io/library/busybox:latest');
  importToStore(`${join(SHARED_IMAGES, 'app')}:v1`, root, 'docker.io/library/app:v1');
  importToStore(`${join(SHARED_IMAGES, 'app')}:v2`, root, 'docker.io/library/app:v2');
  const exportTool = (args: string[], input?: string) => runTool('img-export', ['--root', root, ...args], { input });
  const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
  const tarList = (path: string) => execFileSync('tar', ['tf', path], { encoding: 'utf8' }).trim().split('\n');
  const busybox = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', `oci:${root}:docker.io/library/busybox:latest`], { encoding: 'utf8' }));
  const busyboxConfig: string = busybox.config.digest;

  t.test('docker archive: skopeo docker-archive: reads it, the config digest is the stored one', async (t) => {
    const out = join(work, 'busybox.tar');
    const res = await exportTool(['busybox', '-o', out]);
    t.equal(res.code, 0, res.stderr);
    t.notOk(existsSync(`${out}.tmp`), 'no temporary file left');
    t.equal(tarList(out)[0], 'manifest.json', 'manifest.json comes first');
    const manifest = JSON.parse(execFileSync('tar', ['xOf', out, 'manifest.json'], { encoding: 'utf8' }));
    t.same(manifest[0].RepoTags, ['busybox:latest']);
    const { stdout } = await execFileAsync('skopeo', ['inspect', '--raw', `docker-archive:${out}`]);
    t.equal(JSON.parse(stdout).config.digest, busyboxConfig);
    await execFileAsync('skopeo', ['copy', '-q', `docker-archive:${out}`, `oci:${join(work, 'from-docker')}:t`]);
    const copied = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', `oci:${join(work, 'from-docker')}:t`], { encoding: 'utf8' }));
    t.equal(copied.config.digest, busyboxConfig, 'the round trip keeps the config');
  });

  t.test('the same export twice gives the same bytes; stdout and -o agree', async (t) => {
    const a = join(work, 'a.tar');
    t.equal((await exportTool(['app:v1', 'app:v2', '-o', a])).code, 0);
    const piped = execFileSync('node', [toolPath('img-export'), '--root', root, 'app:v1', 'app:v2'], { maxBuffer: 1 << 30 });
    t.equal(createHash('sha256').update(piped).digest('hex'), sha(a), 'a second export, to stdout, has the same bytes');
  });

  t.test('two images sharing layers store them once', async (t) => {
    const out = join(work, 'a.tar');
    const blobs = tarList(out).filter((name) => /^blobs\/sha256\/[a-f0-9]{64}$/.test(name));
    // app:v1 and app:v2 share two of their three layers: 4 layers + 2 configs.
    t.equal(blobs.length, 6);
    t.equal(new Set(blobs).size, blobs.length, 'no blob twice');
    const manifest = JSON.parse(execFileSync('tar', ['xOf', out, 'manifest.json'], { encoding: 'utf8' }));
    t.same(
      manifest.map((m: { RepoTags: string[] }) => m.RepoTags),
      [['app:v1'], ['app:v2']],
    );
    t.same(manifest[0].Layers.slice(0, 2), manifest[1].Layers.slice(0, 2));
  });

  t.test('image records on stdin export as the references do', async (t) => {
    const listed = await runTool('img-ls', ['--root', root, '--json', 'app:*']);
    t.equal(listed.code, 0, listed.stderr);
    const out = join(work, 'stdin.tar');
    const res = await exportTool(['-o', out], listed.stdout);
    t.equal(res.code, 0, res.stderr);
    t.equal(sha(out), sha(join(work, 'a.tar')));
  });

  t.test('--format oci: skopeo oci-archive: copies it, manifest digest kept', async (t) => {
    const out = join(work, 'oci.tar');
    t.equal((await exportTool(['busybox', '--format', 'oci', '-o', out])).code, 0);
    const index = JSON.parse(execFileSync('tar', ['xOf', out, 'index.json'], { encoding: 'utf8' }));
    t.equal(index.manifests[0].annotations['org.opencontainers.image.ref.name'], 'docker.io/library/busybox:latest');
    const dest = join(work, 'from-oci');
    await execFileAsync('skopeo', ['copy', '-q', '--preserve-digests', `oci-archive:${out}`, `oci:${dest}:t`]);
    const { stdout } = await execFileAsync('skopeo', ['inspect', '--raw', `oci:${dest}:t`]);
    t.equal(JSON.parse(stdout).config.digest, busyboxConfig);
    const copied = JSON.parse(readFileSync(join(dest, 'index.json'), 'utf8'));
    t.equal(copied.manifests[0].digest, index.manifests[0].digest, 'the manifest digest is the stored one');
  });

  t.test('--format oci-dir: umoci reads the layout and unpacks the same rootfs as from the store', async (t) => {
    const dir = join(work, 'layout');
    t.equal((await exportTool(['busybox', '--format', 'oci-dir', '-o', dir])).code, 0);
    const { stdout } = await execFileAsync('umoci', ['ls', '--layout', dir]);
    t.equal(stdout.trim(), 'docker.io/library/busybox:latest');
    await execFileAsync('umoci', ['raw', 'unpack', '--image', `${dir}:docker.io/library/busybox:latest`, join(work, 'rootfs-export')]);
    await execFileAsync('umoci', ['raw', 'unpack', '--image', `${join(SHARED_IMAGES, 'busybox')}:latest`, join(work, 'rootfs-shared')]);
    const listing = (d: string) => execFileSync('sh', ['-c', `cd ${d} && find . -printf '%p %m %u %y %s\\n' | sort`], { encoding: 'utf8' });
    t.equal(listing(join(work, 'rootfs-export')), listing(join(work, 'rootfs-shared')));
    const again = await exportTool(['busybox', '--format', 'oci-dir', '-o', dir]);
    t.equal(again.code, 2, 'an existing directory is refused');
    t.notOk(existsSync(`${dir}.tmp`));
  });

  t.test('refuses to write a tar to a terminal', async (t) => {
    const cmd = `node ${toolPath('img-export')} --root ${root} busybox; echo "rc=$?"`;
    const out = execFileSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8' });
    t.match(out, /refusing to write a tar archive to a terminal/);
    t.match(out, /-o FILE/);
    t.match(out, /rc=2/);
  });

  t.test('bad input: unknown flag, unknown format, malformed stdin line, unknown reference', async (t) => {
    t.equal((await exportTool(['--bogus', 'busybox'])).code, 2);
    t.equal((await exportTool(['--format', 'zip', 'busybox'])).code, 2);
    const bad = await exportTool(['-o', join(work, 'bad.tar')], '{"type":"image",\n');
    t.equal(bad.code, 2);
    t.match(bad.stderr, /stdin:1/);
    t.notOk(existsSync(join(work, 'bad.tar')));
    const missing = join(work, 'missing.tar');
    const res = await exportTool(['busybox', 'nosuch:tag', '-o', missing]);
    t.equal(res.code, 1);
    t.match(res.stderr, /nosuch/);
    t.notOk(existsSync(missing), 'nothing written when one image is missing');
    t.equal(res.rawStdout, '', 'no record on stdout');
  });

  t.test('a corrupt layer blob: ERR_STORE_CORRUPT, nothing half-written', async (t) => {
    const corrupt = join(work, 'corrupt-store');
    importToStore(`${join(SHARED_IMAGES, 'busybox')}:latest`, corrupt, 'docker.io/library/busybox:latest');
    const layer = join(corrupt, 'blobs', 'sha256', busybox.layers[0].digest.slice('sha256:'.length));
    const data = readFileSync(layer);
    data[data.length - 100] ^= 0xff;
    writeFileSync(layer, data);
    for (const format of ['docker', 'oci']) {
      const out = join(work, `corrupt-${format}.tar`);
      const res = await runTool('img-export', ['--root', corrupt, '--log-format=json', '--format', format, 'busybox', '-o', out]);
      t.equal(res.code, 1, format);
      t.ok(
        res.logs.some((l) => l.code === 'ERR_STORE_CORRUPT'),
        `${format}: ${res.stderr}`,
      );
      t.notOk(existsSync(out), `${format}: no archive`);
      t.notOk(existsSync(`${out}.tmp`), `${format}: no temporary file`);
    }
    t.same(readdirSync(join(corrupt, 'tmp')), [], 'the temporary tree is removed');
  });

  t.test('docker load and docker run of the archive (dockerd on a private socket)', async (t) => {
    const dwork = mkdtempSync('/tmp/conveyor-export-docker-');
    t.teardown(() => rmSync(dwork, { recursive: true, force: true }));
    const started = await startDockerd(dwork);
    if (typeof started === 'string') {
      t.skip(started);
      return;
    }
    t.teardown(started.stop);
    const docker = (...args: string[]) => execFileAsync('docker', ['-H', `unix://${started.sock}`, ...args], { timeout: 60_000 });
    const { stdout: loaded } = await docker('load', '-i', join(work, 'busybox.tar'));
    t.match(loaded, /busybox:latest/);
    const { stdout: id } = await docker('image', 'inspect', '--format', '{{.Id}}', 'busybox:latest');
    t.equal(id.trim(), busyboxConfig, 'docker sees the stored config');
    const { stdout } = await docker('run', '--rm', '--network', 'none', 'busybox:latest', '/bin/busybox', 'echo', 'loaded');
    t.equal(stdout, 'loaded\n');
  });
}
