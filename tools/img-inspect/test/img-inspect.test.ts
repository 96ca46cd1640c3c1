/**
 * img-inspect on real images (the shared layouts, copied into a store by
 * skopeo), checked against skopeo's own reading of them, and on hostile
 * input: forged references, unknown names, malformed lines, an index entry
 * with a bad digest, a config that is not JSON.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasSharedImages, importToStore, SHARED_IMAGES } from '../../../test/helpers/fixtures.js';
import { runTool } from '../../../test/helpers/tools.js';

if (!hasSharedImages) t.fail(`the shared images are missing: ${SHARED_IMAGES}`);

const root = t.testdir();
importToStore(`${SHARED_IMAGES}/app:v1`, root, 'docker.io/library/app:v1');
importToStore(`${SHARED_IMAGES}/busybox:latest`, root, 'mybox:short');
const inspect = (args: string[], input?: string) => runTool('img-inspect', ['--root', root, ...args], { input });

/** Writes `data` as a blob of the store; returns its descriptor's digest and size. */
function writeBlob(data: Buffer): { digest: string; size: number } {
  const hex = createHash('sha256').update(data).digest('hex');
  writeFileSync(join(root, 'blobs', 'sha256', hex), data);
  return { digest: `sha256:${hex}`, size: data.length };
}

function addIndexEntry(entry: unknown): void {
  const path = join(root, 'index.json');
  const index = JSON.parse(readFileSync(path, 'utf8'));
  index.manifests.push(entry);
  writeFileSync(path, JSON.stringify(index));
}

t.test('the whole manifest, config and history, as skopeo reads them', async (t) => {
  const result = await inspect(['app:v1']);
  t.equal(result.code, 0, result.stderr);
  t.equal(result.records.length, 1);
  const [record] = result.records;
  t.equal(record.type, 'inspect');
  t.equal(record.ref, 'docker.io/library/app:v1');
  const config = JSON.parse(execFileSync('skopeo', ['inspect', '--config', `oci:${SHARED_IMAGES}/app:v1`], { encoding: 'utf8' }));
  t.strictSame(record.imageConfig, config, 'imageConfig is the config blob, whole');
  const raw = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', `oci:${SHARED_IMAGES}/app:v1`], { encoding: 'utf8' }));
  t.strictSame(record.manifest, raw, 'manifest is the manifest, whole');
  t.equal(record.id, raw.config.digest, "docker's Id is the config digest");
  t.strictSame(record.repoTags, ['docker.io/library/app:v1']);
  t.strictSame(record.repoDigests, [`docker.io/library/app@${record.digest}`]);
  t.equal(record.layers.length, 3);
  t.strictSame(
    record.history.map((h: { createdBy: string }) => h.createdBy),
    config.history.map((h: { created_by: string }) => h.created_by).reverse(),
    'history newest first',
  );
  t.ok(record.unpackedSize > record.size, 'the unpacked size exceeds the compressed one');
});

t.test('a name skopeo wrote (mybox:short) and records from img-ls', async (t) => {
  const byShort = await inspect(['mybox:short']);
  t.equal(byShort.code, 0, byShort.stderr);
  t.strictSame(byShort.records[0].repoTags, ['docker.io/library/mybox:short']);
  const listed = await runTool('img-ls', ['--root', root]);
  const piped = await inspect([], `${listed.stdout}{"type":"note","x":1}\n`);
  t.equal(piped.code, 0, piped.stderr);
  t.strictSame(
    piped.records
      .filter((r) => r.type === 'inspect')
      .map((r) => r.ref)
      .sort(),
    ['docker.io/library/app:v1', 'mybox:short'],
  );
  t.strictSame(piped.records.at(-1), { type: 'note', x: 1 }, 'other records pass through');
  const table = await inspect(['--json', 'app:v1']);
  t.equal(table.records.length, 1, '--json keeps NDJSON');
});

t.test('an unnamed entry, as img-ls lists it (by digest), is described', async (t) => {
  const app = (await inspect(['app:v1'])).records[0];
  const root2 = t.testdir();
  importToStore(`${SHARED_IMAGES}/app:v1`, root2, 'docker.io/library/app:v1');
  const path = join(root2, 'index.json');
  const index = JSON.parse(readFileSync(path, 'utf8'));
  delete index.manifests[0].annotations;
  writeFileSync(path, JSON.stringify(index));
  const listed = await runTool('img-ls', ['--root', root2]);
  t.equal(listed.records[0]?.ref, app.digest);
  const described = await runTool('img-inspect', ['--root', root2], { input: listed.stdout });
  t.equal(described.code, 0, described.stderr);
  t.equal(described.records[0]?.id, app.id);
  t.strictSame(described.records[0]?.repoTags, []);
  const pushed = await runTool('img-push', ['--root', root2, app.digest]);
  t.not(pushed.code, 0, 'a bare digest is no reference img-push could push');
});

t.test('unknown and forged references fail clearly; the others are still described', async (t) => {
  const result = await inspect(['--log-format=json', 'nothere:v1', 'app:v1']);
  t.equal(result.code, 1);
  t.equal(result.records.length, 1, 'app:v1 still described');
  t.equal(result.logs[0]?.code, 'ERR_IMAGE_NOT_FOUND');
  t.match(result.logs[0]?.message, /docker\.io\/library\/nothere:v1 is not in the store/);
  const forged = await inspect(['--log-format=json', '../../etc/passwd']);
  t.equal(forged.code, 2);
  t.equal(forged.logs[0]?.code, 'ERR_REF_INVALID');
  const digestless = await inspect(['--log-format=json', `app@sha256:${'0'.repeat(64)}`]);
  t.equal(digestless.code, 1, 'a digest the store does not hold is not found');
});

t.test('bad input: malformed lines name stdin:N, unknown flags exit 2', async (t) => {
  const bad = await inspect(['--log-format=json'], 'app:v1\n{"type":"image", nope\n');
  t.equal(bad.code, 2);
  t.equal(bad.records.length, 1, 'the line before was described');
  t.equal(bad.logs.at(-1)?.code, 'ERR_INPUT_JSON');
  t.match(bad.logs.at(-1)?.message, /stdin:2/);
  const flag = await inspect(['--nope']);
  t.equal(flag.code, 2);
  t.match(flag.stderr, /unknown flag --nope/);
  const help = await inspect(['--help']);
  t.match(help.stdout, /^Usage: img-inspect/);
  t.match(help.stdout, /Examples:/);
});

t.test('hostile store entries: a bad digest is skipped, a config that is not JSON is a clear error', async (t) => {
  addIndexEntry({
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: 'sha256:../../../etc/passwd',
    size: 1,
    annotations: { 'org.opencontainers.image.ref.name': 'evil:v1' },
  });
  const evil = await inspect(['--log-format=json', 'evil:v1']);
  t.equal(evil.code, 1);
  t.ok(
    evil.logs.some((l) => l.level === 'warn' && /skipping entry \d+: digest is not a sha256 digest/.test(l.message)),
    'the entry is skipped with a warning',
  );
  t.equal(evil.logs.at(-1)?.code, 'ERR_IMAGE_NOT_FOUND');

  const app = (await inspect(['app:v1'])).records[0];
  const config = writeBlob(Buffer.from('this is { not json'));
  const manifest = writeBlob(Buffer.from(JSON.stringify({ ...app.manifest, config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config } })));
  addIndexEntry({
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    ...manifest,
    annotations: { 'org.opencontainers.image.ref.name': 'docker.io/library/broken:v1' },
  });
  const broken = await inspect(['--log-format=json', 'broken:v1']);
  t.equal(broken.code, 1);
  t.equal(broken.logs.at(-1)?.code, 'ERR_MANIFEST_INVALID');
  t.match(broken.logs.at(-1)?.message, new RegExp(`blob ${config.digest} is not valid JSON`));
});
