/**
 * img-push against a real registry (distribution 2.8), the store made by
 * skopeo (an independent writer): a first push uploads every blob and the
 * manifest the registry then serves has our digest; a second push uploads
 * nothing (the registry's access log shows no upload request); a push to
 * another repository of the same registry mounts every blob; an index with
 * its platform manifests; chunked uploads; img-tag | img-push; and the
 * refusals: unknown images, incomplete indexes, forged and malformed input,
 * unknown flags.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout, importToStore } from '../../../test/helpers/fixtures.js';
import { rawManifest, startRegistry } from '../../../test/helpers/registry.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { jsonLines, runTool, toolPath, type ToolResult } from '../../../test/helpers/tools.js';
import { spawn } from 'node:child_process';
import { acquireGcLock } from '@conveyor/lib-common/lease';
import { Store } from '@conveyor/lib-common/store';

const env = { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config' };
/** Runs img-push; `onWaiting` is called once it reports waiting for img-prune (on stderr, json logs). */
function push(args: string[], input?: string, onWaiting?: () => void): Promise<ToolResult> {
  if (!onWaiting) return runTool('img-push', args, { env, input });
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [toolPath('img-push'), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (onWaiting && /waiting for img-prune/.test(stderr)) {
        const call = onWaiting;
        onWaiting = undefined;
        call();
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, records: jsonLines(stdout), logs: jsonLines(stderr) }));
  });
}
const errorOf = (r: ToolResult) => r.logs.find((l) => l.level === 'error');

/** Upload requests (POST/PATCH/PUT on blobs/uploads) in an access-log slice, for one repository or all. */
function uploads(log: string, repo = '[^ ]+'): { post: number; patch: number; put: number; mount: number } {
  const count = (method: string, extra = '') => (log.match(new RegExp(`"${method} /v2/${repo}/blobs/uploads/${extra}[^"]* HTTP`, 'g')) ?? []).length;
  return { post: count('POST'), patch: count('PATCH'), put: count('PUT'), mount: count('POST', '\\?[^"]*mount=') };
}

const reg = await startRegistry();
t.teardown(() => reg.stop());
const root = tempStore('conveyor-push-');
t.teardown(() => removeStore(root));
importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/app:dev');
importToStore(`${busyboxLayout()}:v2`, root, 'docker.io/library/app:v2');
const local = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')).manifests.find(
  (m: any) => m.annotations['org.opencontainers.image.ref.name'] === 'docker.io/library/app:dev',
);
const manifest = JSON.parse(readFileSync(join(root, 'blobs', 'sha256', local.digest.slice(7)), 'utf8'));
const blobCount = 1 + manifest.layers.length;
const base = ['--root', root, '--log-format=json'];

t.test('first push uploads every blob; the registry serves our manifest digest', async (t) => {
  const mark = reg.logs().length;
  const r = await push([...base, '--to', `${reg.host}/team/app:1.0`, 'app:dev']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.records.length, 1);
  t.match(r.records[0], { type: 'image', v: 1, ref: `${reg.host}/team/app:1.0`, digest: local.digest });
  const served = await rawManifest(reg, 'team/app:1.0');
  t.equal(served.digest, local.digest, 'the registry holds the very bytes of the stored manifest');
  t.equal(served.mediaType, local.mediaType);
  const log = reg.logs().slice(mark);
  t.equal(uploads(log).put, blobCount, 'one closing PUT per blob');
  t.equal(uploads(log).patch, 0, 'small blobs go up monolithically');
  t.match(log, /"PUT \/v2\/team\/app\/manifests\/1\.0 HTTP/);
  t.match(
    r.logs.find((l) => l.level === 'info' && /pushed/.test(l.message)),
    { message: new RegExp(`${blobCount} blobs uploaded`) },
  );
  // --to names the image so in the store too (as docker tag + docker push).
  const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8'));
  t.ok(index.manifests.some((m: any) => m.annotations['org.opencontainers.image.ref.name'] === `${reg.host}/team/app:1.0` && m.digest === local.digest));
});

t.test('a second push uploads nothing (HEAD says the registry has every blob)', async (t) => {
  const mark = reg.logs().length;
  const r = await push([...base, `${reg.host}/team/app:1.0`]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.records[0].digest, local.digest);
  t.same(uploads(reg.logs().slice(mark)), { post: 0, patch: 0, put: 0, mount: 0 });
  t.match(r.logs.find((l) => /pushed/.test(l.message ?? ''))?.message, new RegExp(`0 blobs uploaded \\(0 bytes\\), 0 mounted, ${blobCount} already there`));
});

t.test('img-tag | img-push to another repository mounts instead of uploading', async (t) => {
  const tag = await runTool('img-tag', ['--root', root, `${reg.host}/team/app:1.0`, `${reg.host}/other/app:1.0`], { env });
  t.equal(tag.code, 0, tag.stderr);
  const mark = reg.logs().length;
  const r = await push(['--root', root, '--log-format=json'], tag.stdout);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.records[0].ref, `${reg.host}/other/app:1.0`);
  const log = reg.logs().slice(mark);
  t.equal(uploads(log, 'other/app').mount, blobCount, 'a mount per blob');
  t.equal(uploads(log, 'other/app').put, 0, 'no upload');
  t.match(log, /"POST \/v2\/other\/app\/blobs\/uploads\/\?[^"]*from=team%2Fapp[^"]*" 201/);
  t.equal((await rawManifest(reg, 'other/app:1.0')).digest, local.digest);
});

t.test('a mount source the store names but the registry lacks: the 202 session it opens carries the upload', async (t) => {
  const store = tempStore('conveyor-push-ghost-');
  t.teardown(() => removeStore(store));
  importToStore(`${busyboxLayout()}:v2`, store, `${reg.host}/ghost/app:1`);
  const mark = reg.logs().length;
  const r = await push(['--root', store, '--log-format=json', '--to', `${reg.host}/real/app:1`, `${reg.host}/ghost/app:1`]);
  t.equal(r.code, 0, r.stderr);
  const log = reg.logs().slice(mark);
  t.ok(uploads(log, 'real/app').mount > 0, 'mounts were tried from ghost/app');
  t.equal(uploads(log, 'real/app').post, uploads(log, 'real/app').mount, 'no other session opened: the mount 202s were used');
  t.match(log, /"POST \/v2\/real\/app\/blobs\/uploads\/\?[^"]*from=ghost%2Fapp[^"]*" 202/);
  const v2 = JSON.parse(readFileSync(join(store, 'index.json'), 'utf8')).manifests[0];
  t.equal((await rawManifest(reg, 'real/app:1')).digest, v2.digest);
});

t.test('chunked upload: PATCHes of --chunk-size, then the closing PUT', async (t) => {
  // A store of its own: it knows no repository of this registry to mount from.
  const store = tempStore('conveyor-push-chunked-');
  t.teardown(() => removeStore(store));
  importToStore(`${busyboxLayout()}:v2`, store, 'docker.io/library/app:v2');
  const v2 = JSON.parse(readFileSync(join(store, 'index.json'), 'utf8')).manifests[0];
  const v2manifest = JSON.parse(readFileSync(join(store, 'blobs', 'sha256', v2.digest.slice(7)), 'utf8'));
  const sizes: number[] = [v2manifest.config.size, ...v2manifest.layers.map((l: any) => l.size)];
  const chunk = 256 * 1024;
  const expected = sizes.filter((s) => s > chunk).reduce((n, s) => n + Math.ceil(s / chunk), 0);
  t.ok(expected >= 2, 'the busybox layer is larger than two chunks');
  const mark = reg.logs().length;
  const r = await push(['--root', store, '--log-format=json', '--chunk-size', '256k', '--to', `${reg.host}/chunked/app:v2`, 'app:v2']);
  t.equal(r.code, 0, r.stderr);
  const log = reg.logs().slice(mark);
  t.equal(uploads(log, 'chunked/app').patch, expected);
  t.equal((await rawManifest(reg, 'chunked/app:v2')).digest, v2.digest);
});

t.test('an index goes up with its platform manifests; the tag names the index', async (t) => {
  const store = tempStore('conveyor-push-index-');
  t.teardown(() => removeStore(store));
  importToStore(`${busyboxLayout()}:latest`, store, 'docker.io/library/bb:latest');
  importToStore(`${busyboxLayout()}:v2`, store, 'docker.io/library/bb:v2');
  const index = JSON.parse(readFileSync(join(store, 'index.json'), 'utf8'));
  const [a, b] = index.manifests;
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { mediaType: a.mediaType, digest: a.digest, size: a.size, platform: { os: 'linux', architecture: 'amd64' } },
        { mediaType: b.mediaType, digest: b.digest, size: b.size, platform: { os: 'linux', architecture: 'arm64' } },
      ],
    }),
  );
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  writeFileSync(join(store, 'blobs', 'sha256', digest.slice(7)), body);
  index.manifests.push({
    mediaType: 'application/vnd.oci.image.index.v1+json',
    digest,
    size: body.length,
    annotations: { 'org.opencontainers.image.ref.name': 'docker.io/library/bb:multi' },
  });
  writeFileSync(join(store, 'index.json'), JSON.stringify(index));
  const r = await push(['--root', store, '--log-format=json', '--to', `${reg.host}/multi/bb:1`, 'bb:multi']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.records[0].indexDigest, digest);
  t.ok([a.digest, b.digest].includes(r.records[0].digest), 'digest is a platform manifest');
  const served = await rawManifest(reg, 'multi/bb:1');
  t.equal(served.digest, digest);
  t.equal(served.mediaType, 'application/vnd.oci.image.index.v1+json');
  t.equal((await rawManifest(reg, `multi/bb@${b.digest}`)).digest, b.digest);

  t.test('an index whose other platforms are not in the store is refused before the network', async (t) => {
    const broken = JSON.parse(body.toString());
    broken.manifests.push({ mediaType: a.mediaType, digest: `sha256:${'e'.repeat(64)}`, size: 10, platform: { os: 'linux', architecture: 's390x' } });
    const brokenBody = Buffer.from(JSON.stringify(broken));
    const brokenDigest = `sha256:${createHash('sha256').update(brokenBody).digest('hex')}`;
    writeFileSync(join(store, 'blobs', 'sha256', brokenDigest.slice(7)), brokenBody);
    const idx = JSON.parse(readFileSync(join(store, 'index.json'), 'utf8'));
    idx.manifests.push({
      mediaType: 'application/vnd.oci.image.index.v1+json',
      digest: brokenDigest,
      size: brokenBody.length,
      annotations: { 'org.opencontainers.image.ref.name': 'docker.io/library/bb:partial' },
    });
    writeFileSync(join(store, 'index.json'), JSON.stringify(idx));
    const mark = reg.logs().length;
    const r = await push(['--root', store, '--log-format=json', '--to', `${reg.host}/multi/bb:partial`, 'bb:partial']);
    t.equal(r.code, 1);
    t.equal(errorOf(r)?.code, 'ERR_IMAGE_NOT_FOUND');
    t.match(errorOf(r)?.message, /s*not in the store/);
    t.equal(
      reg
        .logs()
        .slice(mark)
        .match(/multi\/bb/g),
      null,
      'nothing was sent',
    );
  });
});

t.test('a running img-prune (the gc lock held) makes the push wait, then it goes through', async (t) => {
  const gc = await acquireGcLock(new Store(root));
  let released = false;
  // Never a hang: a push that does not say it waits gets the lock back after 20 s, and fails the test.
  const safety = setTimeout(() => void gc.release(), 20_000);
  const r = await push([...base, `${reg.host}/team/app:1.0`], undefined, () => {
    released = true;
    clearTimeout(safety);
    void gc.release();
  });
  clearTimeout(safety);
  t.ok(released, 'the lock was released only once the push said it waits');
  t.equal(r.code, 0, r.stderr);
  t.match(r.logs.find((l) => /waiting for img-prune/.test(l.message ?? ''))?.level, 'info');
  t.equal(r.records[0]?.digest, local.digest);
});

t.test('refusals', async (t) => {
  t.test('an image the store does not hold: ERR_IMAGE_NOT_FOUND, exit 1, the others still pushed', async (t) => {
    const r = await push([...base, `${reg.host}/nope/app:1`, `${reg.host}/team/app:1.0`]);
    t.equal(r.code, 1);
    t.equal(errorOf(r)?.code, 'ERR_IMAGE_NOT_FOUND');
    t.equal(r.records.length, 1, 'the second reference was pushed');
    t.match(
      r.errors,
      [{ type: 'error', code: 'ERR_IMAGE_NOT_FOUND', exitCode: 1, tool: 'img-push' }],
      'the failure is an error record for the tools downstream',
    );
  });
  t.test('an invalid reference: exit 2', async (t) => {
    const r = await push([...base, 'UPPER/case']);
    t.equal(r.code, 2);
    t.equal(errorOf(r)?.code, 'ERR_REF_INVALID');
  });
  t.test('an unknown flag: exit 2', async (t) => {
    const r = await push([...base, '--force', 'app:dev']);
    t.equal(r.code, 2);
    t.equal(errorOf(r)?.code, 'ERR_USAGE');
  });
  t.test('--to with two images: exit 2 before anything is sent', async (t) => {
    const mark = reg.logs().length;
    const r = await push([...base, '--to', `${reg.host}/x/y:1`, 'app:dev', 'app:v2']);
    t.equal(r.code, 2);
    t.equal(errorOf(r)?.code, 'ERR_USAGE');
    t.equal(r.records.length, 0);
    t.notMatch(reg.logs().slice(mark), /\/v2\/x\/y/);
  });
  t.test('--to pinned to another digest: ERR_DIGEST_MISMATCH before anything is sent', async (t) => {
    const r = await push([...base, '--to', `${reg.host}/x/y@sha256:${'a'.repeat(64)}`, 'app:dev']);
    t.equal(r.code, 1);
    t.equal(errorOf(r)?.code, 'ERR_DIGEST_MISMATCH');
  });
  t.test('--chunk-size 0 and a bad --jobs: exit 2', async (t) => {
    for (const args of [
      ['--chunk-size', '0'],
      ['--chunk-size', 'lots'],
      ['-j', '0'],
    ]) {
      const r = await push([...base, ...args, 'app:dev']);
      t.equal(r.code, 2, args.join(' '));
    }
  });
  t.test('a malformed input line names stdin:N, exit 2; records before it were handled', async (t) => {
    const r = await push(base, `{"type":"layer","digest":"x"}\n{"ref": ${JSON.stringify(`${reg.host}/team/app:1.0`)}}\n{not json\n`);
    t.equal(r.code, 2);
    t.equal(errorOf(r)?.code, 'ERR_INPUT_JSON');
    t.match(errorOf(r)?.message, /stdin:3/);
    t.same(r.records[0], { type: 'layer', digest: 'x' }, 'other records pass through');
    t.equal(r.records[1]?.type, 'image');
  });
  t.test('a forged record: a ref that is not a reference is ERR_REF_INVALID; paths in it are never read', async (t) => {
    const forged = { type: 'image', ref: '../../etc/passwd', store: '/etc', digest: local.digest };
    const r = await push(base, `${JSON.stringify(forged)}\n`);
    t.equal(r.code, 2);
    t.equal(errorOf(r)?.code, 'ERR_REF_INVALID');
  });
  t.test('a store blob that does not hold its digest: ERR_STORE_CORRUPT, nothing pushed', async (t) => {
    const store = tempStore('conveyor-push-corrupt-');
    t.teardown(() => removeStore(store));
    importToStore(`${busyboxLayout()}:latest`, store, 'docker.io/library/bad:1');
    const entry = JSON.parse(readFileSync(join(store, 'index.json'), 'utf8')).manifests[0];
    const file = join(store, 'blobs', 'sha256', entry.digest.slice(7));
    writeFileSync(file, `${readFileSync(file, 'utf8')} `);
    const r = await push(['--root', store, '--log-format=json', '--to', `${reg.host}/corrupt/app:1`, 'bad:1']);
    t.equal(r.code, 1);
    t.equal(errorOf(r)?.code, 'ERR_STORE_CORRUPT');
  });
});
