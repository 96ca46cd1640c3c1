/**
 * img-fetch against a real registry (distribution 2.8, anonymous), seeded by
 * skopeo from umoci-built images: media types, indexes and platforms, digest
 * pinning, dedupe, re-pulls, stdin, errors, and compatibility of the store
 * with skopeo and umoci.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout } from '../../../test/helpers/fixtures.js';
import { pushImage, pushIndex, rawManifest, startRegistry, type TestRegistry } from '../../../test/helpers/registry.js';
import { runFetch } from './run.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';

let reg: TestRegistry;
let latest: { digest: string; mediaType: string; size: number };
let v2: { digest: string; mediaType: string; size: number };
let indexDigest: string;

t.before(async () => {
  reg = await startRegistry();
  const layout = busyboxLayout();
  await pushImage(`${layout}:latest`, reg, 'bb:latest');
  await pushImage(`${layout}:v2`, reg, 'bb:v2', 'v2s2');
  latest = await rawManifest(reg, 'bb:latest');
  v2 = await rawManifest(reg, 'bb:v2');
  indexDigest = await pushIndex(reg, 'bb', 'multi', [
    { mediaType: latest.mediaType, digest: latest.digest, size: latest.size, platform: { os: 'linux', architecture: 'amd64' } },
    { mediaType: v2.mediaType, digest: v2.digest, size: v2.size, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ]);
});
t.teardown(() => reg?.stop());

function fileDigest(path: string): string {
  return `sha256:${createHash('sha256').update(readFileSync(path)).digest('hex')}`;
}

function requestsIn(logs: string): number {
  return logs.split('\n').filter((l) => /"(GET|HEAD) \/v2\//.test(l)).length;
}

t.test('pulls an OCI image: download and layer records first, verified blobs, a store skopeo and umoci read', async (t) => {
  const root = t.testdir();
  const ref = `${reg.host}/bb:latest`;
  const r = await runFetch(['--root', root, ref]);
  t.equal(r.code, 0, r.stderr);
  t.strictSame(
    r.records.map((x) => x.type),
    ['download', 'layer', 'image'],
  );
  const [download, layer, image] = r.records;
  t.strictSame({ ...download, type: 'layer' }, layer, 'the download record is the layer record said as the blob starts');
  t.equal(image.ref, ref);
  t.equal(image.digest, latest.digest);
  t.equal(image.mediaType, OCI_MANIFEST);
  t.equal(image.store, root);
  t.strictSame(image.config.Cmd, ['sh']);
  t.match(image.platform, { os: 'linux', architecture: 'amd64' });
  t.equal(image.layers.length, 1);
  t.match(layer, { ref, index: 0, count: 1, digest: image.layers[0].digest, diffID: image.layers[0].diffID, chainID: image.layers[0].chainID, v: 1 });
  t.notOk('parentChainID' in layer);
  for (const d of [image.digest, image.configDescriptor.digest, ...image.layers.map((l: { digest: string }) => l.digest)]) {
    t.equal(fileDigest(join(root, 'blobs', 'sha256', d.slice(7))), d, `blob ${d.slice(0, 19)} holds its digest`);
  }
  t.strictSame(readdirSync(join(root, 'ingest')), [], 'no partial downloads left');
  const inspect = JSON.parse(execFileSync('skopeo', ['inspect', `oci:${root}:${ref}`], { encoding: 'utf8' }));
  t.equal(inspect.Digest, latest.digest, 'skopeo reads the store');
  const rootfs = join(t.testdirName, 'rootfs');
  execFileSync('umoci', ['raw', 'unpack', '--image', `${root}:${ref}`, rootfs], { stdio: 'ignore' });
  t.ok(existsSync(join(rootfs, 'bin', 'busybox')), 'umoci unpacks it');
});

t.test('pulls a Docker schema2 image', async (t) => {
  const root = t.testdir();
  const r = await runFetch(['--root', root, `${reg.host}/bb:v2`]);
  t.equal(r.code, 0, r.stderr);
  const image = r.records.at(-1)!;
  t.equal(image.mediaType, DOCKER_MANIFEST);
  t.equal(image.digest, v2.digest);
  t.equal(image.layers.length, 2);
  t.strictSame(
    r.records
      .filter((x) => x.type === 'layer')
      .map((x) => x.index)
      .sort(),
    [0, 1],
  );
  const top = r.records.find((x) => x.type === 'layer' && x.index === 1)!;
  t.equal(top.parentChainID, image.layers[0].chainID);
  // The manifest is stored verbatim (its digest is the registry's); skopeo's oci: transport
  // only looks at OCI media types in index.json, so compatibility is checked on OCI images.
  const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8'));
  t.equal(index.manifests[0].mediaType, DOCKER_MANIFEST);
  t.equal(fileDigest(join(root, 'blobs', 'sha256', v2.digest.slice(7))), v2.digest);
});

t.test('an index resolves to the platform manifest', async (t) => {
  const cases: { name: string; args: string[]; digest: () => string; platform: string }[] = [
    { name: 'host platform by default', args: [], digest: () => latest.digest, platform: 'linux/amd64' },
    { name: '--platform chooses another entry', args: ['--platform', 'linux/arm64'], digest: () => v2.digest, platform: 'linux/arm64/v8' },
    { name: '--platform with variant', args: ['--platform', 'linux/arm64/v8'], digest: () => v2.digest, platform: 'linux/arm64/v8' },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const root = t.testdir();
      const ref = `${reg.host}/bb:multi`;
      const r = await runFetch(['--root', root, ...c.args, ref]);
      t.equal(r.code, 0, r.stderr);
      const image = r.records.at(-1)!;
      t.equal(image.digest, c.digest());
      t.equal(image.indexDigest, indexDigest);
      const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8'));
      t.equal(index.manifests.length, 1);
      t.equal(index.manifests[0].digest, c.digest(), 'the store points at the platform manifest, not the index');
      t.equal(index.manifests[0].annotations['io.conveyor.index.digest'], indexDigest);
      t.equal(index.manifests[0].annotations['org.opencontainers.image.ref.name'], ref);
      t.equal(index.manifests[0].annotations['io.conveyor.platform'], c.platform);
    });
  }
});

t.test('a platform the index lacks is ERR_PLATFORM_NOT_FOUND, listing what there is', async (t) => {
  const root = t.testdir();
  const r = await runFetch(['--root', root, '--log-format=json', '--platform', 'linux/s390x', `${reg.host}/bb:multi`]);
  t.equal(r.code, 1);
  t.equal(r.records.length, 0);
  const error = r.logs.find((l) => l.level === 'error')!;
  t.equal(error.code, 'ERR_PLATFORM_NOT_FOUND');
  t.match(error.hint, /linux\/amd64, linux\/arm64\/v8/);
  t.match(error.message, /linux\/s390x/);
});

t.test('--platform for a single-platform image of another platform fails', async (t) => {
  const root = t.testdir();
  const r = await runFetch(['--root', root, '--log-format=json', '--platform', 'linux/arm64', `${reg.host}/bb:latest`]);
  t.equal(r.code, 1);
  t.equal(r.logs.find((l) => l.level === 'error')?.code, 'ERR_PLATFORM_NOT_FOUND');
});

t.test('digest pinning: by manifest digest and by index digest; a present pinned image costs no request', async (t) => {
  const root = t.testdir();
  const byManifest = `${reg.host}/bb@${v2.digest}`;
  const r1 = await runFetch(['--root', root, byManifest]);
  t.equal(r1.code, 0, r1.stderr);
  t.equal(r1.records.at(-1)!.digest, v2.digest);
  t.equal(r1.records.at(-1)!.ref, byManifest);
  t.notOk(r1.records.at(-1)!.indexDigest);

  const byIndex = `${reg.host}/bb@${indexDigest}`;
  const r2 = await runFetch(['--root', root, byIndex]);
  t.equal(r2.code, 0, r2.stderr);
  t.equal(r2.records.at(-1)!.digest, latest.digest);
  t.equal(r2.records.at(-1)!.indexDigest, indexDigest);

  const before = requestsIn(reg.logs());
  const r3 = await runFetch(['--root', root, byManifest, byIndex]);
  t.equal(r3.code, 0, r3.stderr);
  t.strictSame(
    r3.records.filter((x) => x.type === 'image').map((x) => x.digest),
    [v2.digest, latest.digest],
  );
  t.strictSame(
    r3.records.map((x) => x.type),
    ['layer', 'layer', 'image', 'layer', 'image'],
    'present layers are announced too',
  );
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.equal(requestsIn(reg.logs()), before, 'no request reached the registry');
});

t.test('dedupe: a second image sharing a layer downloads only the new one', async (t) => {
  const root = t.testdir();
  const r1 = await runFetch(['--root', root, `${reg.host}/bb:latest`]);
  t.equal(r1.code, 0, r1.stderr);
  const shared = r1.records.at(-1)!.layers[0].digest;
  const sharedBefore = reg.blobGets(shared);
  const r2 = await runFetch(['--root', root, `${reg.host}/bb:v2`]);
  t.equal(r2.code, 0, r2.stderr);
  const image = r2.records.at(-1)!;
  t.equal(image.layers[0].digest, shared, 'v2 shares the bottom layer');
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.equal(reg.blobGets(shared), sharedBefore, 'the shared layer was not downloaded again');
  t.ok(reg.blobGets(image.layers[1].digest) >= 1, 'the new layer was downloaded');
  const layerRecords = r2.records.filter((x) => x.type === 'layer');
  t.equal(layerRecords[0].index, 0, 'the present layer is announced first, before any download');
  t.strictSame(
    r2.records.filter((x) => x.type === 'download').map((x) => x.index),
    [1],
    'a download record for the layer downloaded, none for the present one',
  );
});

t.test('two processes pulling the same image into one store download each blob once', async (t) => {
  await pushImage(`${busyboxLayout()}:v2`, reg, 'race:v2');
  const root = t.testdir();
  const digests = (await rawManifest(reg, 'race:v2')).body;
  const layers: string[] = JSON.parse(digests.toString('utf8')).layers.map((l: { digest: string }) => l.digest);
  const before = layers.map((d) => reg.blobGets(d));
  const [a, b] = await Promise.all([runFetch(['--root', root, `${reg.host}/race:v2`]), runFetch(['--root', root, `${reg.host}/race:v2`])]);
  t.equal(a.code, 0, a.stderr);
  t.equal(b.code, 0, b.stderr);
  t.equal(a.records.at(-1)!.digest, b.records.at(-1)!.digest);
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.strictSame(
    layers.map((d, i) => reg.blobGets(d) - before[i]),
    layers.map(() => 1),
  );
  for (const d of layers) t.equal(fileDigest(join(root, 'blobs', 'sha256', d.slice(7))), d);
  t.equal(JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')).manifests.length, 1);
});

t.test('re-pull of a present image', async (t) => {
  const root = t.testdir();
  const ref = `${reg.host}/bb:v2`;
  t.equal((await runFetch(['--root', root, ref])).code, 0);
  const countOf = (re: RegExp) =>
    reg
      .logs()
      .split('\n')
      .filter((l) => re.test(l)).length;
  const heads = () => countOf(/"HEAD \/v2\/bb\/manifests\/v2 /);
  const gets = () => countOf(/"GET \/v2\/bb\/(manifests|blobs)\//);

  t.test('by tag: one HEAD, no GET', async (t) => {
    const [h, g] = [heads(), gets()];
    const r = await runFetch(['--root', root, ref]);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.records.at(-1)!.digest, v2.digest);
    await new Promise((resolve) => setTimeout(resolve, 200));
    t.equal(heads(), h + 1);
    t.equal(gets(), g);
  });
  t.test('by tag of an index: one HEAD (the index digest), no GET; another platform is pulled', async (t) => {
    const multi = `${reg.host}/bb:multi`;
    t.equal((await runFetch(['--root', root, multi])).code, 0);
    const headsOf = () => countOf(/"HEAD \/v2\/bb\/manifests\/multi /);
    const [h, g] = [headsOf(), gets()];
    const r = await runFetch(['--root', root, multi]);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.records.at(-1)!.indexDigest, indexDigest);
    await new Promise((resolve) => setTimeout(resolve, 200));
    t.equal(headsOf(), h + 1);
    t.equal(gets(), g);
    const arm = await runFetch(['--root', root, '--platform', 'linux/arm64', multi]);
    t.equal(arm.code, 0, arm.stderr);
    t.equal(arm.records.at(-1)!.digest, v2.digest, 'the stored amd64 entry does not answer for arm64');
  });
  t.test('--pull=missing: no request', async (t) => {
    const [h, g] = [heads(), gets()];
    const r = await runFetch(['--root', root, '--pull=missing', ref]);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.records.at(-1)!.digest, v2.digest);
    await new Promise((resolve) => setTimeout(resolve, 200));
    t.equal(heads(), h);
    t.equal(gets(), g);
  });
  t.test('--pull=never: the store only', async (t) => {
    const ok = await runFetch(['--root', root, '--pull=never', ref]);
    t.equal(ok.code, 0);
    const missing = await runFetch(['--root', root, '--pull=never', '--log-format=json', `${reg.host}/bb:latest`]);
    t.equal(missing.code, 1);
    t.equal(missing.logs.find((l) => l.level === 'error')?.code, 'ERR_IMAGE_NOT_FOUND');
  });
  t.test('a moved tag is pulled again', async (t) => {
    await pushImage(`${busyboxLayout()}:latest`, reg, 'bb:moving');
    const r1 = await runFetch(['--root', root, `${reg.host}/bb:moving`]);
    t.equal(r1.records.at(-1)!.digest, latest.digest);
    await pushImage(`${busyboxLayout()}:v2`, reg, 'bb:moving', 'v2s2');
    const r2 = await runFetch(['--root', root, `${reg.host}/bb:moving`]);
    t.equal(r2.code, 0, r2.stderr);
    t.equal(r2.records.at(-1)!.digest, v2.digest);
  });
  t.test('a layer blob removed from the store is fetched again', async (t) => {
    const image = (await runFetch(['--root', root, '--pull=missing', ref])).records.at(-1)!;
    const top = image.layers[1].digest;
    execFileSync('rm', [join(root, 'blobs', 'sha256', top.slice(7))]);
    const r = await runFetch(['--root', root, ref]);
    t.equal(r.code, 0, r.stderr);
    t.equal(fileDigest(join(root, 'blobs', 'sha256', top.slice(7))), top);
  });
});

t.test('references from stdin: bare lines and records; other records pass through', async (t) => {
  const root = t.testdir();
  const other = { type: 'container', v: 1, id: 'abc123abc123', status: 'running', store: '/x' };
  const input = [
    `${reg.host}/bb:latest`,
    '',
    JSON.stringify(other),
    JSON.stringify({ type: 'tag', v: 1, name: `${reg.host}/bb`, tag: 'v2' }),
    JSON.stringify({ ref: `${reg.host}/bb:latest` }),
  ].join('\n');
  const r = await runFetch(['--root', root, '--no-layers'], { input });
  t.equal(r.code, 0, r.stderr);
  t.strictSame(
    r.records.map((x) => x.type),
    ['image', 'container', 'image', 'image'],
  );
  t.strictSame(r.records[1], other, 'passed through unchanged');
  t.equal(r.records[2].digest, v2.digest);
});

t.test('bad input lines are named and exit 2', async (t) => {
  const root = t.testdir();
  const r = await runFetch(['--root', root, '--log-format=json'], { input: `{"type":"container","v":1}\n{"ref": nope\n` });
  t.equal(r.code, 2);
  const error = r.logs.find((l) => l.level === 'error')!;
  t.equal(error.code, 'ERR_INPUT_JSON');
  t.match(error.message, /stdin:2/);
  const r2 = await runFetch(['--root', root], { input: '\n\n[1,2]\n' });
  t.equal(r2.code, 2);
  t.match(r2.stderr, /stdin:3/);
});

t.test('unknown images and names fail with exit 1 and a stable code', async (t) => {
  const root = t.testdir();
  const cases: [string, string][] = [
    [`${reg.host}/bb:nosuchtag`, 'ERR_REGISTRY_NOT_FOUND'],
    [`${reg.host}/nosuchrepo:latest`, 'ERR_REGISTRY_NOT_FOUND'],
    [`${reg.host}/bb@sha256:${'0'.repeat(64)}`, 'ERR_REGISTRY_NOT_FOUND'],
  ];
  for (const [ref, code] of cases) {
    const r = await runFetch(['--root', root, '--log-format=json', ref]);
    t.equal(r.code, 1, ref);
    t.equal(r.logs.find((l) => l.level === 'error')?.code, code, ref);
  }
  const text = await runFetch(['--root', root, `${reg.host}/bb:nosuchtag`]);
  t.match(text.stderr, /img-fetch: .*bb:nosuchtag.*HTTP 404.*\(manifest unknown: check the name and tag\)/);
  const usage = await runFetch(['--root', root, '--log-format=json', 'Bad/Name']);
  t.equal(usage.code, 2);
  t.equal(usage.logs[0].code, 'ERR_REF_INVALID');
});

t.test('one failing reference does not stop the others', async (t) => {
  const root = t.testdir();
  const r = await runFetch(['--root', root, '--no-layers', `${reg.host}/bb:nosuchtag`, `${reg.host}/bb:latest`]);
  t.equal(r.code, 1);
  t.equal(r.records.length, 1);
  t.equal(r.records[0].digest, latest.digest);
});

t.test('an unreachable registry is ERR_REGISTRY_UNAVAILABLE naming the host', async (t) => {
  const root = t.testdir();
  const r = await runFetch(['--root', root, '--log-format=json', '127.0.0.1:9/bb:latest']);
  t.equal(r.code, 1);
  const error = r.logs.find((l) => l.level === 'error')!;
  t.equal(error.code, 'ERR_REGISTRY_UNAVAILABLE');
  t.match(error.message, /127\.0\.0\.1:9/);
});

t.test('progress events on stderr with --progress=json; stdout stays data', async (t) => {
  const root = t.testdir();
  const r = await runFetch(['--root', root, '--progress=json', `${reg.host}/bb:v2`]);
  t.equal(r.code, 0, r.stderr);
  const events = r.logs.filter((l) => l.type === 'progress');
  const done = events.filter((e) => e.phase === 'done' && e.action === 'download');
  t.equal(done.length, 2);
  t.ok(events.some((e) => e.phase === 'start'));
  t.ok(r.records.every((x) => x.type === 'download' || x.type === 'layer' || x.type === 'image'));
});

t.test('usage errors', async (t) => {
  for (const args of [['--pull=sometimes', 'x'], ['--jobs=0', 'x'], ['--platform=linux', 'x'], ['--bogus']]) {
    const r = await runFetch(args);
    t.equal(r.code, 2, args.join(' '));
  }
  const help = await runFetch(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /Usage: img-fetch/);
  t.match(help.stdout, /Examples:/);
});

t.test('schema1 manifests are refused clearly', async (t) => {
  const old = await startRegistry({ schema1: true });
  t.teardown(() => old.stop());
  await pushImage(`${busyboxLayout()}:latest`, old, 'legacy:v1', 'v2s1');
  const root = t.testdir();
  const r = await runFetch(['--root', root, '--log-format=json', `${old.host}/legacy:v1`]);
  t.equal(r.code, 1);
  const error = r.logs.find((l) => l.level === 'error')!;
  t.equal(error.code, 'ERR_MANIFEST_UNSUPPORTED');
  t.match(error.message, /schema1/);
  t.strictSame(JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')).manifests, []);
});
