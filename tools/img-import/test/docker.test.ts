/**
 * Round trip through Docker itself: an image skopeo wrote as a docker-archive
 * is `docker load`ed into a dockerd started here on a private socket, data
 * root and exec root, then `docker save | img-import` streams it back; the
 * image unpacks to the same tree umoci unpacks from the original. Skips with
 * its reason when dockerd is not installed or does not come up in 30 s.
 */
import t from 'tap';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hasSharedImages, SHARED_IMAGES } from '../../../test/helpers/fixtures.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runToolSync, toolPath } from '../../../test/helpers/tools.js';
import { startDockerd } from '../../../test/helpers/dockerd.js';

const execFileAsync = promisify(execFile);

t.test('docker save | img-import (dockerd on a private socket)', async (t) => {
  if (!hasSharedImages) return t.skip('the shared images (/work/shared/images) are not here');
  const work = mkdtempSync('/tmp/conveyor-import-docker-');
  const root = tempStore('conveyor-import-docker-store-');
  t.teardown(() => removeStore(root));
  const started = await startDockerd(work);
  if (typeof started === 'string') {
    rmSync(work, { recursive: true, force: true });
    return t.skip(started);
  }
  t.teardown(async () => {
    await started.stop();
    rmSync(work, { recursive: true, force: true });
  });
  const docker = (...args: string[]) => execFileAsync('docker', ['-H', `unix://${started.sock}`, ...args], { timeout: 60_000 });
  const source = join(SHARED_IMAGES, 'busybox');
  const archive = join(work, 'in.tar');
  execFileSync('skopeo', ['copy', '-q', `oci:${source}:latest`, `docker-archive:${archive}:roundtrip:1`]);
  await docker('load', '-q', '-i', archive);

  // Streamed: docker save's stdout is img-import's stdin, no file between them.
  const env = { ...process.env, CONVEYOR_ROOT: root };
  const { stdout, stderr, code } = await new Promise<{ stdout: string; stderr: string; code: number | null }>((resolve) => {
    const save = spawn('docker', ['-H', `unix://${started.sock}`, 'save', 'roundtrip:1'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const imp = spawn(process.execPath, ['--', toolPath('img-import')], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    save.stdout.pipe(imp.stdin);
    let out = '';
    let err = '';
    imp.stdout.on('data', (d: Buffer) => (out += d));
    imp.stderr.on('data', (d: Buffer) => (err += d));
    imp.on('close', (c) => resolve({ stdout: out, stderr: err, code: c }));
  });
  t.equal(code, 0, stderr);
  const records = stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
  t.same(
    records.map((r) => r.type),
    ['layer', 'image'],
  );
  t.equal(records[1].ref, 'docker.io/library/roundtrip:1');
  const { stdout: id } = await docker('image', 'inspect', '--format', '{{.Id}}', 'roundtrip:1');
  t.equal(records[1].configDescriptor.digest, id.trim(), 'the config is the one Docker holds (same image ID)');

  const original = join(work, 'original');
  execFileSync('umoci', ['raw', 'unpack', '--image', `${source}:latest`, original], { stdio: 'ignore' });
  const flat = join(work, 'flat');
  const listed = runToolSync('img-ls', ['roundtrip:1'], { env });
  const unpacked = runToolSync('layer-unpack', ['--flatten', flat], { env, input: listed.rawStdout });
  t.equal(unpacked.code, 0, unpacked.stderr);
  t.same(tree(flat), tree(original), 'same tree as umoci unpacks from the original');
  await docker('rmi', '-f', 'roundtrip:1');
});

/** Every entry of a tree: path, type, mode, owner, and content hash or link target. */
function tree(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, prefix)).sort()) {
    const rel = prefix ? `${prefix}/${name}` : name;
    const path = join(dir, rel);
    const info = lstatSync(path);
    const head = `${rel} ${(info.mode & 0o7777).toString(8)} ${info.uid}:${info.gid}`;
    if (info.isDirectory()) out.push(`${head} dir`, ...tree(dir, rel));
    else if (info.isSymbolicLink()) out.push(`${head} -> ${readlinkSync(path)}`);
    else out.push(`${head} ${createHash('sha256').update(readFileSync(path)).digest('hex')}`);
  }
  return out;
}
