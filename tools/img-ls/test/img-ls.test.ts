import t from 'tap';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { busyboxLayout, importToStore } from '../../../test/helpers/fixtures.js';
import { runTool } from '../../../test/helpers/tools.js';
import { matchesPattern } from '../src/list.js';

const imgLs = (args: string[]) => runTool('img-ls', args);

// [ref, pattern, matches]
const patterns: [string, string, boolean][] = [
  ['docker.io/library/busybox:latest', 'busybox', true],
  ['docker.io/library/busybox:v2', 'busybox', true],
  ['docker.io/library/busybox:latest', 'busybox:latest', true],
  ['docker.io/library/busybox:latest', 'busybox:v2', false],
  ['docker.io/library/busybox:latest', 'docker.io/library/busybox', true],
  ['docker.io/library/busyboxx:latest', 'busybox', false],
  ['localhost:5000/app:v1', 'localhost:5000/*', true],
  ['localhost:5000/app:v1', 'localhost:5000/app', true],
  ['localhost:5000/app:v1', 'app', false],
  ['docker.io/library/alpine:3.20', 'alpine:3*', true],
  ['docker.io/library/alpine:edge', 'alpine:3*', false],
];
for (const [ref, pattern, expected] of patterns) {
  t.equal(matchesPattern(ref, pattern), expected, `${pattern} ${expected ? 'matches' : 'does not match'} ${ref}`);
}

t.test('lists images written by skopeo, filtered by pattern', async (t) => {
  const root = t.testdir();
  const layout = busyboxLayout();
  importToStore(`${layout}:latest`, root, 'docker.io/library/busybox:latest');
  importToStore(`${layout}:v2`, root, 'localhost:5000/bb:v2');

  const all = await imgLs(['--root', root]);
  t.equal(all.code, 0);
  const records = all.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.strictSame(records.map((r) => r.ref).sort(), ['docker.io/library/busybox:latest', 'localhost:5000/bb:v2']);
  const v2 = records.find((r) => r.ref === 'localhost:5000/bb:v2');
  t.equal(v2.type, 'image');
  t.equal(v2.v, 1);
  t.equal(v2.layers.length, 2);
  t.equal(v2.layers[1].chainID.length, 71);
  t.not(v2.layers[1].chainID, v2.layers[1].diffID, 'the upper chain ID differs from its diff ID');
  t.equal(v2.store, root);
  t.match(v2.configDescriptor.digest, /^sha256:[a-f0-9]{64}$/);

  const filtered = await imgLs(['--root', root, 'busybox']);
  t.equal(filtered.stdout.trim().split('\n').length, 1);

  const refs = await imgLs(['--root', root, '--refs', 'localhost:5000/*']);
  t.equal(refs.stdout, 'localhost:5000/bb:v2\n');
  const ids = await imgLs(['--root', root, '-q', 'localhost:5000/*']);
  t.equal(ids.stdout, `${v2.configDescriptor.digest.slice(7, 19)}\n`, "-q prints docker's IMAGE ID");

  const table = await imgLs(['--root', root, '--table']);
  t.match(table.stdout, /^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE\n/);
  t.match(table.stdout, /localhost:5000\/bb\s+v2\s+[a-f0-9]{12}\s/);
});

t.test('an empty or missing store lists nothing and succeeds', async (t) => {
  const result = await imgLs(['--root', join(t.testdir(), 'none')]);
  t.equal(result.code, 0);
  t.equal(result.stdout, '');
});

t.test('a broken entry is skipped with a warning, the rest listed', async (t) => {
  const root = t.testdir();
  const layout = busyboxLayout();
  importToStore(`${layout}:latest`, root, 'docker.io/library/busybox:latest');
  importToStore(`${layout}:v2`, root, 'docker.io/library/busybox:v2');
  const records = (await imgLs(['--root', root])).stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const v2 = records.find((r) => r.ref.endsWith(':v2'));
  await rm(join(root, 'blobs', 'sha256', v2.configDescriptor.digest.slice(7)));
  const result = await imgLs(['--root', root]);
  t.equal(result.code, 0);
  t.equal(result.stdout.trim().split('\n').length, 1);
  t.match(result.stderr, /img-ls: warning: skipping docker\.io\/library\/busybox:v2/);
});

t.test('a corrupt index.json is a clear error', async (t) => {
  const root = t.testdir({ 'index.json': '{ nope', 'oci-layout': '{"imageLayoutVersion":"1.0.0"}' });
  const result = await imgLs(['--root', root, '--log-format=json']);
  t.equal(result.code, 1);
  t.equal(JSON.parse(result.stderr.trim()).code, 'ERR_STORE_CORRUPT');
});

t.test('usage errors exit 2', async (t) => {
  const result = await imgLs(['--nope']);
  t.equal(result.code, 2);
  t.match(result.stderr, /^img-ls: unknown flag --nope \(see --help\)/);
  const help = await imgLs(['--help']);
  t.match(help.stdout, /^Usage: img-ls/);
  t.match(help.stdout, /Examples:/);
});

t.test('an index stored whole by another tool lists as the host platform image', async (t) => {
  const { hasSharedImages, SHARED_IMAGES } = await import('../../../test/helpers/fixtures.js');
  if (!hasSharedImages) return t.skip('no shared images');
  const root = t.testdir();
  const { execFileSync } = await import('node:child_process');
  execFileSync('skopeo', ['copy', '-q', '--all', `oci:${SHARED_IMAGES}/busybox-index:index`, `oci:${root}:docker.io/library/bbindex:latest`]);
  const result = await imgLs(['--root', root]);
  t.equal(result.code, 0, result.stderr);
  const [record] = result.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.equal(record.ref, 'docker.io/library/bbindex:latest');
  t.match(record.indexDigest, /^sha256:/, 'the index digest is kept');
  t.not(record.digest, record.indexDigest, 'the record names the platform manifest');
  t.strictSame(record.platform, { os: 'linux', architecture: 'amd64' });
});

t.test('null or malformed index.json entries are skipped with a warning, not a crash', async (t) => {
  const root = t.testdir();
  importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/busybox:latest');
  const { readFileSync, writeFileSync } = await import('node:fs');
  const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8'));
  index.manifests = [null, { annotations: 'x' }, ...index.manifests, 'junk'];
  writeFileSync(join(root, 'index.json'), JSON.stringify(index));
  const result = await imgLs(['--root', root, '--log-format=json']);
  t.equal(result.code, 0, result.stderr);
  t.strictSame(
    result.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).ref),
    ['docker.io/library/busybox:latest'],
  );
  const warnings = result.stderr
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.equal(warnings.length, 3);
  t.ok(warnings.every((w) => w.level === 'warn'));
  t.match(warnings[0].message, /index\.json: skipping entry 0: not a descriptor object: null/);
});

t.test('null entries inside a stored index are skipped with a warning', async (t) => {
  const root = t.testdir();
  importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/busybox:latest');
  const { readFileSync, writeFileSync } = await import('node:fs');
  const { createHash } = await import('node:crypto');
  const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8'));
  const [entry] = index.manifests;
  const nested = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [null, { mediaType: entry.mediaType, digest: entry.digest, size: entry.size, platform: { os: 'linux', architecture: 'amd64' } }],
    }),
  );
  const digest = `sha256:${createHash('sha256').update(nested).digest('hex')}`;
  writeFileSync(join(root, 'blobs', 'sha256', digest.slice(7)), nested);
  index.manifests = [{ mediaType: 'application/vnd.oci.image.index.v1+json', digest, size: nested.length, annotations: entry.annotations }];
  writeFileSync(join(root, 'index.json'), JSON.stringify(index));
  const result = await imgLs(['--root', root]);
  t.equal(result.code, 0, result.stderr);
  t.equal(JSON.parse(result.stdout).digest, entry.digest);
  t.match(result.stderr, /warning: docker\.io\/library\/busybox:latest: index sha256:[a-f0-9]+: skipping entry 0: not a descriptor object: null/);
});

t.test('an image tagged many times: one row per name, each with its own ref; a broken one warned once per name', async (t) => {
  const root = t.testdir();
  const layout = busyboxLayout();
  importToStore(`${layout}:latest`, root, 'docker.io/library/busybox:latest');
  importToStore(`${layout}:v2`, root, 'docker.io/library/other:v2');
  const tags = Array.from({ length: 5 }, (_, i) => `many:t${i}`);
  t.equal((await runTool('img-tag', ['--root', root, 'busybox:latest', ...tags])).code, 0);
  t.equal((await runTool('img-tag', ['--root', root, 'other:v2', 'other:v3'])).code, 0);
  const records = (await imgLs(['--root', root])).records;
  t.strictSame(
    records.map((r) => r.ref).sort(),
    ['docker.io/library/busybox:latest', ...tags.map((tag) => `docker.io/library/${tag}`), 'docker.io/library/other:v2', 'docker.io/library/other:v3'].sort(),
  );
  const busybox = records.find((r) => r.ref === 'docker.io/library/busybox:latest')!;
  for (const r of records.filter((r) => r.ref.includes('many:')))
    t.same({ ...r, ref: busybox.ref }, busybox, `${r.ref} is busybox's record under its own name`);
  const other = records.find((r) => r.ref.endsWith('other:v2'))!;
  await rm(join(root, 'blobs', 'sha256', (other.configDescriptor as { digest: string }).digest.slice(7)));
  const broken = await imgLs(['--root', root]);
  t.equal(broken.code, 0);
  t.equal(broken.records.length, 6, 'the busybox names are still listed');
  t.match(broken.stderr, /skipping docker\.io\/library\/other:v2/);
  t.match(broken.stderr, /skipping docker\.io\/library\/other:v3/);
});
