/**
 * img-prune and img-build's step cache (`<store>/build-cache/<key hex>.json`):
 * valid entries keep the blobs and unpacked layers they list; invalid, stale
 * and forged entries are removed without touching anything they name;
 * --build-cache and -a remove every entry and then what only it kept.
 * The entries are planted in the format the build overview fixes, so this
 * runs without img-build.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseBuildCacheEntry } from '@conveyor/lib-common/gc';
import { busyboxLayout, importToStore } from '../../../test/helpers/fixtures.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';

const prune = (root: string, args: string[] = []) => runTool('img-prune', ['--root', root, '--log-format=json', ...args]);
const sha = (text: string) => createHash('sha256').update(text).digest('hex');
const entry = (blobs: unknown, chainIDs: unknown = []) =>
  JSON.stringify({ version: 1, key: 'sha256:ignored', createdAt: '2026-11-29T00:00:00Z', blobs, chainIDs });

t.test('parseBuildCacheEntry accepts digests only', async (t) => {
  const digest = `sha256:${'a'.repeat(64)}`;
  const cases: [string, string, boolean][] = [
    ['valid', entry([digest], [digest]), true],
    ['no chainIDs', JSON.stringify({ version: 1, blobs: [digest] }), true],
    ['not JSON', '{"version":1,', false],
    ['an array', '[]', false],
    ['another version', JSON.stringify({ version: 2, blobs: [digest] }), false],
    ['blobs missing', JSON.stringify({ version: 1 }), false],
    ['a path in blobs', entry(['sha256:../../../etc/passwd']), false],
    ['a path in chainIDs', entry([digest], ['../../layers']), false],
    ['an absolute path', entry(['/etc/passwd']), false],
    ['short hex', entry(['sha256:abc']), false],
    ['upper-case hex', entry([`sha256:${'A'.repeat(64)}`]), false],
    ['a number', entry([5]), false],
  ];
  for (const [name, text, valid] of cases) t.equal(parseBuildCacheEntry(text) !== undefined, valid, name);
});

t.test('valid entries keep their content; bad ones go, touching nothing they name', async (t) => {
  const root = tempStore('conveyor-prune-cache-');
  const outside = mkdtempSync('/tmp/conveyor-prune-outside-');
  t.teardown(() => {
    removeStore(root);
    rmSync(outside, { recursive: true, force: true });
  });
  importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/busybox:latest');
  const blobs = join(root, 'blobs', 'sha256');
  const cacheDir = join(root, 'build-cache');
  mkdirSync(cacheDir);
  const victim = join(outside, 'victim');
  writeFileSync(victim, 'must survive\n');
  const beside = [join(root, '..', 'beside-blob'), join(root, '..', 'beside-layer')];
  for (const path of beside) writeFileSync(path, 'beside the store\n');
  mkdirSync(join(outside, 'layer', 'diff'), { recursive: true });

  // Blob and layer only the valid entry keeps.
  const keptBlob = sha('kept layer');
  writeFileSync(join(blobs, keptBlob), 'kept layer');
  const keptChain = 'a'.repeat(64);
  mkdirSync(join(root, 'layers', keptChain, 'diff'), { recursive: true });
  // A blob only a stale entry (one of its blobs is gone) lists: garbage.
  const staleBlob = sha('stale');
  writeFileSync(join(blobs, staleBlob), 'stale');
  // A blob that is a symlink out of the store: its entry is refused, the link swept, its target kept.
  const linkBlob = sha('link');
  symlinkSync(victim, join(blobs, linkBlob));

  const plant = () => {
    const entries: Record<string, string> = {
      [`${sha('valid')}.json`]: entry([`sha256:${keptBlob}`], [`sha256:${keptChain}`]),
      [`${sha('not json')}.json`]: '{"version":1,"blobs":[',
      [`${sha('stale')}.json`]: entry([`sha256:${staleBlob}`, `sha256:${'9'.repeat(64)}`]),
      // Taken as paths, these would name the files planted beside the store (blobs/sha256/../../.. and layers/../..).
      [`${sha('dotdot blob')}.json`]: entry([`sha256:${keptBlob}`, 'sha256:../../../beside-blob'], []),
      [`${sha('dotdot chain')}.json`]: entry([`sha256:${keptBlob}`], ['sha256:../../beside-layer']),
      [`${sha('link blob')}.json`]: entry([`sha256:${linkBlob}`]),
      'not-a-key.json': entry([`sha256:${keptBlob}`]),
      [`${sha('dead writer')}.json.999999999.abcd.tmp`]: 'half',
      [`${sha('live writer')}.json.${process.pid}.abcd.tmp`]: 'half',
    };
    for (const [name, text] of Object.entries(entries)) writeFileSync(join(cacheDir, name), text);
    // Layers img-build was packing (pack.ts: tmp/layer-<owner token>.tmp): a dead packer's goes, a live one's stays.
    mkdirSync(join(root, 'tmp'), { recursive: true });
    writeFileSync(join(root, 'tmp', 'layer-999999999.1.abcd.tmp'), 'half a layer');
    writeFileSync(join(root, 'tmp', `layer-${process.pid}.0.abcd.tmp`), 'being packed');
    // An entry that is a symlink (to a valid-looking file outside) or a directory is not an entry.
    writeFileSync(join(outside, 'entry.json'), entry([`sha256:${keptBlob}`]));
    symlinkSync(join(outside, 'entry.json'), join(cacheDir, `${sha('symlink')}.json`));
    mkdirSync(join(cacheDir, `${sha('dir')}.json`, 'sub'), { recursive: true });
    symlinkSync(join(outside, 'layer'), join(cacheDir, `${sha('dir symlink')}.json`));
  };
  plant();
  const removedNames = [
    `${sha('not json')}.json`,
    `${sha('stale')}.json`,
    `${sha('dotdot blob')}.json`,
    `${sha('dotdot chain')}.json`,
    `${sha('link blob')}.json`,
    'not-a-key.json',
    `${sha('dead writer')}.json.999999999.abcd.tmp`,
    `${sha('symlink')}.json`,
    `${sha('dir')}.json`,
    `${sha('dir symlink')}.json`,
  ].sort();
  const keptNames = [`${sha('valid')}.json`, `${sha('live writer')}.json.${process.pid}.abcd.tmp`].sort();

  await t.test('--dry-run names every bad entry and removes nothing', async (t) => {
    const before = readdirSync(cacheDir).sort();
    const run = await prune(root, ['--dry-run']);
    t.equal(run.code, 0, run.stderr);
    const cacheFreed = run.records.filter((r) => r.type === 'freed' && r.path.startsWith('build-cache/'));
    t.strictSame(cacheFreed.map((r) => r.path.slice('build-cache/'.length)).sort(), removedNames);
    const stale = cacheFreed.find((r) => r.path === `build-cache/${sha('stale')}.json`);
    t.equal(stale?.kind, 'build-cache');
    t.equal(stale?.key, `sha256:${sha('stale')}`, 'the record names the cache key');
    t.equal(cacheFreed.find((r) => r.path.endsWith('.tmp'))?.kind, 'temp', "a dead writer's temporary file is a temp");
    t.strictSame(
      run.records.filter((r) => r.type === 'freed' && r.path.startsWith('tmp/')).map((r) => [r.kind, r.path]),
      [['temp', 'tmp/layer-999999999.1.abcd.tmp']],
      "a dead packer's layer is a temp; a live one's is not reported",
    );
    const blobsFreed = run.records.filter((r) => r.kind === 'blob').map((r) => r.digest);
    t.ok(blobsFreed.includes(`sha256:${staleBlob}`), "a stale entry's blob is garbage");
    t.notOk(blobsFreed.includes(`sha256:${keptBlob}`), "the valid entry's blob is kept");
    t.notOk(
      run.records.some((r) => r.kind === 'layer' && r.chainID === `sha256:${keptChain}`),
      "the valid entry's layer is kept",
    );
    t.strictSame(readdirSync(cacheDir).sort(), before, 'nothing removed');
  });

  await t.test('prune removes the bad entries and only them', async (t) => {
    const run = await prune(root);
    t.equal(run.code, 0, run.stderr);
    t.strictSame(readdirSync(cacheDir).sort(), keptNames);
    t.strictSame(readdirSync(join(root, 'tmp')), [`layer-${process.pid}.0.abcd.tmp`], "only the live packer's layer stays");
    t.ok(existsSync(join(blobs, keptBlob)), 'kept blob stays');
    t.ok(existsSync(join(root, 'layers', keptChain, 'diff')), 'kept layer stays');
    t.notOk(existsSync(join(blobs, staleBlob)), 'stale blob swept');
    t.notOk(existsSync(join(blobs, linkBlob)), 'the symlinked blob is swept as a link');
    t.equal(readFileSync(victim, 'utf8'), 'must survive\n', 'the symlink target outside the store is untouched');
    t.ok(existsSync(join(outside, 'entry.json')), "a symlinked entry's target is untouched");
    t.ok(existsSync(join(outside, 'layer', 'diff')), "a symlinked directory entry's target is untouched");
    for (const path of beside) t.ok(existsSync(path), `${path}, which a ../ entry names, is untouched`);
    const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8'));
    t.equal(index.manifests.length, 1, 'the image stays');
    for (const layer of JSON.parse(readFileSync(join(blobs, index.manifests[0].digest.slice(7)), 'utf8')).layers)
      t.ok(existsSync(join(blobs, layer.digest.slice(7))), "the image's layer stays");
  });

  await t.test('--build-cache removes every entry, then what only the cache kept', async (t) => {
    const hashes = join(root, 'build-hashes');
    mkdirSync(hashes, { mode: 0o700 });
    writeFileSync(join(hashes, `${sha('context')}.json`), '{}');
    const kept = await prune(root, []);
    t.ok(existsSync(join(hashes, `${sha('context')}.json`)), 'a plain prune keeps the context hashes');
    t.equal(kept.code, 0, kept.stderr);
    const dry = await prune(root, ['--build-cache', '--dry-run']);
    t.equal(dry.code, 0, dry.stderr);
    t.ok(
      dry.records.some((r) => r.kind === 'build-cache' && r.key === `sha256:${sha('valid')}`),
      'the valid entry would go',
    );
    t.ok(
      dry.records.some((r) => r.kind === 'blob' && r.digest === `sha256:${keptBlob}`),
      'and its blob',
    );
    t.ok(
      dry.records.some((r) => r.kind === 'layer' && r.chainID === `sha256:${keptChain}`),
      'and its layer',
    );
    t.ok(existsSync(join(cacheDir, `${sha('valid')}.json`)), 'a dry run removes nothing');

    const run = await prune(root, ['--build-cache']);
    t.equal(run.code, 0, run.stderr);
    t.strictSame(readdirSync(cacheDir), [`${sha('live writer')}.json.${process.pid}.abcd.tmp`], "only a live writer's temporary file stays");
    t.notOk(existsSync(join(blobs, keptBlob)));
    t.notOk(existsSync(join(root, 'layers', keptChain)));
    t.strictSame(readdirSync(hashes), [], 'the context hashes go with the cache');
    t.ok(
      run.records.some((r) => r.kind === 'build-cache' && r.path === `build-hashes/${sha('context')}.json`),
      'and are reported',
    );
    for (const path of beside) t.ok(existsSync(path), `${path} is untouched by --build-cache too`);
    t.equal(JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')).manifests.length, 1, 'images are not the build cache');
  });

  await t.test('-a removes the build cache too', async (t) => {
    writeFileSync(join(blobs, keptBlob), 'kept layer');
    writeFileSync(join(cacheDir, `${sha('valid')}.json`), entry([`sha256:${keptBlob}`]));
    const run = await prune(root, ['-a']);
    t.equal(run.code, 0, run.stderr);
    t.ok(run.records.some((r) => r.kind === 'build-cache' && r.key === `sha256:${sha('valid')}`));
    t.notOk(existsSync(join(cacheDir, `${sha('valid')}.json`)));
    t.notOk(existsSync(join(blobs, keptBlob)));
  });
});

t.test("a real img-build's cache: its entries are roots until --build-cache", async (t) => {
  const root = tempStore('conveyor-prune-build-');
  const context = mkdtempSync('/tmp/conveyor-prune-ctx-');
  t.teardown(() => {
    removeStore(root);
    rmSync(context, { recursive: true, force: true });
  });
  importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/busybox:latest');
  writeFileSync(join(context, 'Dockerfile'), 'FROM busybox:latest\nCOPY data.txt /data.txt\nRUN echo built > /built\n');
  writeFileSync(join(context, 'data.txt'), 'data\n');
  const env = { ...process.env, SOURCE_DATE_EPOCH: '0' };
  const build = () => runTool('img-build', ['--root', root, '-t', 'pruned:latest', context], { env });
  const first = await build();
  t.equal(first.code, 0, first.stderr);
  const digest = first.records.find((r) => r.type === 'image')?.digest;
  const cacheDir = join(root, 'build-cache');
  const entries = existsSync(cacheDir) ? readdirSync(cacheDir).filter((name) => /^[a-f0-9]{64}\.json$/.test(name)) : [];
  t.ok(entries.length >= 2, 'one entry per cached step');
  const listed = new Set(entries.flatMap((name) => JSON.parse(readFileSync(join(cacheDir, name), 'utf8')).blobs as string[]));
  const layers = digest === undefined ? [] : manifestLayers(root, digest);
  t.ok(layers.length >= 2, 'the image has layers');
  t.ok(
    layers.every((layer) => listed.has(layer)),
    'the entries list every layer of the image',
  );

  // Untagged, the image's content is still what the cache needs: a plain prune keeps it.
  const removed = await runTool('img-rm', ['--root', root, 'pruned:latest']);
  t.equal(removed.code, 0, removed.stderr);
  const plain = await prune(root);
  t.equal(plain.code, 0, plain.stderr);
  t.strictSame(
    readdirSync(cacheDir)
      .filter((name) => name.endsWith('.json'))
      .sort(),
    entries.sort(),
    'every entry stays',
  );
  for (const blob of listed) t.ok(existsSync(join(root, 'blobs', 'sha256', blob.slice(7))), `${blob.slice(7, 19)} kept by the cache`);

  const all = await prune(root, ['--build-cache']);
  t.equal(all.code, 0, all.stderr);
  t.strictSame(readdirSync(cacheDir), [], 'the cache is empty');
  const gone = [...listed].filter((blob) => !existsSync(join(root, 'blobs', 'sha256', blob.slice(7))));
  t.ok(gone.length > 0, 'what only the cache kept is gone');

  // Built again from nothing: the same image (SOURCE_DATE_EPOCH), and the cache is back.
  const again = await build();
  t.equal(again.code, 0, again.stderr);
  t.equal(again.records.find((r) => r.type === 'image')?.digest, digest, 'the same digest');
  t.ok(readdirSync(cacheDir).length >= 2);
});

/** The layer digests of manifest `digest` in the store. */
function manifestLayers(root: string, digest: string): string[] {
  return JSON.parse(readFileSync(join(root, 'blobs', 'sha256', digest.slice(7)), 'utf8')).layers.map((layer: { digest: string }) => layer.digest);
}
