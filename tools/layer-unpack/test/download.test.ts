/**
 * `download` records (issue 17): a layer is unpacked from img-fetch's ingest
 * file while the blob still downloads, and committed only once a `layer` or
 * `image` record says the blob is in the store. The test plays img-fetch's
 * part on a real store: it writes ingest/<hex> piece by piece, renames it into
 * blobs/ and only then writes the `layer` record.
 *
 * Hostile and broken downloads each end in the right layer or in nothing:
 * input that ends without the blob, an ingest file that is not the layer,
 * started over, replaced, a FIFO or a symlink. A forged record is refused as
 * a `layer` record is.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import t from 'tap';
import { jsonLines, toolPath } from '../../../test/helpers/tools.js';
import { poll } from './helpers/poll.js';
import { imageRecords, storeImage } from './helpers/store.js';
import { makeTar } from './helpers/tars.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Random content: its gzip is as large as it is, past the 1 MiB below which a blob is not followed. */
const big = randomBytes(3 * 1024 * 1024);

interface Fixture {
  root: string;
  image: Record<string, any>;
  imageText: string;
  /** The layer's blob, taken out of blobs/ (the download has not started). */
  blob: Buffer;
  blobPath: string;
  ingestPath: string;
  layerDir: string;
  record(type: 'download' | 'layer', extra?: Record<string, unknown>): string;
}

/** A one-layer image in a store whose layer blob is not in yet: `first` (small), then `big`. */
async function fixture(dir: string): Promise<Fixture> {
  const root = join(dir, 'store');
  await storeImage(root, 'localhost/dl:1', [
    await makeTar([
      { name: 'first', content: 'first entry\n' },
      { name: 'big', content: big },
    ]),
  ]);
  const { text, records } = imageRecords(root);
  const image = records[0];
  const layer = image.layers[0];
  const hex = layer.digest.slice(7);
  const blobPath = join(root, 'blobs', 'sha256', hex);
  const blob = readFileSync(blobPath);
  rmSync(blobPath);
  mkdirSync(join(root, 'ingest'), { recursive: true });
  return {
    root,
    image,
    imageText: text,
    blob,
    blobPath,
    ingestPath: join(root, 'ingest', hex),
    layerDir: join(root, 'layers', layer.chainID.slice(7)),
    record: (type, extra = {}) => `${JSON.stringify({ type, v: 1, ...layer, ref: image.ref, index: 0, count: 1, store: root, ...extra })}\n`,
  };
}

function start(root: string) {
  const child = spawn('node', [toolPath('layer-unpack'), '--log-format=json', '--root', root], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; records: Record<string, any>[]; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, records: jsonLines(stdout), stderr })),
  );
  return { stdin: child.stdin, exited };
}

const staging = (root: string) => readdirSync(join(root, 'layers')).filter((n) => n.startsWith('.tmp-'));

t.test('unpacks while the blob downloads, commits once the blob is in', async (t) => {
  const f = await fixture(t.testdir({}));
  const run = start(f.root);
  run.stdin.write(f.record('download'));
  // The first 40% of the blob: `first` is in it, most of `big` is not.
  const part = Math.floor(f.blob.length * 0.4);
  writeFileSync(f.ingestPath, f.blob.subarray(0, part));
  await poll(
    () => existsSync(join(f.root, 'layers')) && staging(f.root).some((s) => existsSync(join(f.root, 'layers', s, 'diff', 'first'))),
    'the first entry',
  );
  t.pass('the layer is unpacking from 40% of its blob');
  appendFileSync(f.ingestPath, f.blob.subarray(part));
  // Complete and verified by its diff ID, but the blob is not in the store yet: nothing is committed.
  await sleep(500);
  t.notOk(existsSync(f.layerDir), 'not committed before the blob is in');
  renameSync(f.ingestPath, f.blobPath);
  run.stdin.write(f.record('layer'));
  await poll(() => existsSync(join(f.layerDir, 'meta.json')), 'the commit');
  run.stdin.end(f.imageText);
  const { code, records, stderr } = await run.exited;
  t.equal(code, 0, stderr);
  t.equal(records.length, 1, 'download and layer records consumed');
  t.strictSame(records[0].layerDirs, [join(f.layerDir, 'diff')]);
  t.equal(readFileSync(join(f.layerDir, 'diff', 'first'), 'utf8'), 'first entry\n');
  t.ok(readFileSync(join(f.layerDir, 'diff', 'big')).equals(big), 'the big file as in the layer');
  t.match(JSON.parse(readFileSync(join(f.layerDir, 'meta.json'), 'utf8')), { chainID: f.image.layers[0].chainID, diffID: f.image.layers[0].diffID });
  t.strictSame(staging(f.root), []);
});

t.test('the image record alone says the blob is in', async (t) => {
  const f = await fixture(t.testdir({}));
  const run = start(f.root);
  run.stdin.write(f.record('download'));
  writeFileSync(f.ingestPath, f.blob);
  await sleep(200);
  renameSync(f.ingestPath, f.blobPath);
  run.stdin.end(f.imageText);
  const { code, records, stderr } = await run.exited;
  t.equal(code, 0, stderr);
  t.strictSame(records[0].layerDirs, [join(f.layerDir, 'diff')]);
  t.ok(readFileSync(join(f.layerDir, 'diff', 'big')).equals(big));
});

/** layer-unpack unpacking from half of the blob, announced by a download record, the rest not yet written. */
async function halfDownloaded(dir: string) {
  const f = await fixture(dir);
  const run = start(f.root);
  run.stdin.write(f.record('download'));
  writeFileSync(f.ingestPath, f.blob.subarray(0, f.blob.length >> 1));
  await poll(() => existsSync(join(f.root, 'layers')) && staging(f.root).length > 0, 'the unpack to start');
  return { f, run };
}

t.test('input that ends before the blob is in: nothing is kept, and that is no error of ours', async (t) => {
  const { f, run } = await halfDownloaded(t.testdir({}));
  // img-fetch failed (its error record would go on down the pipe) or was killed: its output ends.
  run.stdin.end();
  const { code, records, stderr } = await run.exited;
  t.equal(code, 0, stderr);
  t.strictSame(records, []);
  t.notOk(existsSync(f.layerDir), 'no layer committed');
  t.strictSame(staging(f.root), [], 'no staging dir left');
  t.equal(stderr, '', 'nothing to say: the producer reports its own failure');
});

t.test("the producer's error record: the layer it was downloading is dropped at once, the record passed on", async (t) => {
  const { f, run } = await halfDownloaded(t.testdir({}));
  const error = {
    type: 'error',
    v: 1,
    code: 'ERR_DIGEST_MISMATCH',
    message: 'blob sha256:… from the registry: the content has digest …',
    exitCode: 1,
    tool: 'img-fetch',
  };
  run.stdin.write(`${JSON.stringify(error)}\n`);
  // Before the input ends: img-fetch may go on with another reference, whose layers need the place.
  await poll(() => staging(f.root).length === 0, 'the staging dir to go');
  run.stdin.end();
  const { code, records } = await run.exited;
  t.equal(code, 1, "the producer's exit code");
  t.strictSame(records, [error]);
  t.notOk(existsSync(f.layerDir));
});

/** Ways the ingest file turns out not to be (or not to stay) the blob; the committed blob decides each time. */
const broken: { name: string; play(f: Fixture): Promise<void> }[] = [
  {
    name: 'another layer in the ingest file (a lying registry, caught by img-fetch)',
    play: async (f) => {
      writeFileSync(f.ingestPath, gzipSync(await makeTar([{ name: 'evil', content: randomBytes(2 * 1024 * 1024) }])));
      await sleep(300);
      rmSync(f.ingestPath);
    },
  },
  {
    name: 'started over: truncated after a registry ignored the range',
    play: async (f) => {
      writeFileSync(f.ingestPath, f.blob.subarray(0, 600_000));
      await sleep(100);
      truncateSync(f.ingestPath, 0);
      writeFileSync(f.ingestPath, f.blob);
    },
  },
  {
    name: 'replaced: removed after a failed verification and downloaded again',
    play: async (f) => {
      writeFileSync(f.ingestPath, Buffer.concat([f.blob.subarray(0, 600_000), randomBytes(100_000)]));
      await sleep(100);
      rmSync(f.ingestPath);
      writeFileSync(f.ingestPath, f.blob);
    },
  },
  {
    name: 'a FIFO planted at the ingest path',
    play: async (f) => {
      execFileSync('mkfifo', [f.ingestPath]);
      await sleep(100);
      rmSync(f.ingestPath);
    },
  },
  {
    name: 'a symlink planted at the ingest path',
    play: async (f) => {
      writeFileSync(`${f.ingestPath}.elsewhere`, f.blob);
      symlinkSync(`${f.ingestPath}.elsewhere`, f.ingestPath);
      await sleep(100);
      rmSync(f.ingestPath);
    },
  },
  {
    name: 'never made: the blob went in by another way',
    play: async () => sleep(100),
  },
];

for (const b of broken) {
  t.test(`${b.name}: the layer is unpacked from the committed blob`, async (t) => {
    const f = await fixture(t.testdir({}));
    const run = start(f.root);
    run.stdin.write(f.record('download'));
    await b.play(f);
    if (existsSync(f.ingestPath)) rmSync(f.ingestPath);
    writeFileSync(f.blobPath, f.blob);
    run.stdin.write(f.record('layer'));
    run.stdin.end(f.imageText);
    const { code, records, stderr } = await run.exited;
    t.equal(code, 0, stderr);
    t.strictSame(records[0]?.layerDirs, [join(f.layerDir, 'diff')]);
    t.strictSame(readdirSync(join(f.layerDir, 'diff')).sort(), ['big', 'first'], 'the layer, nothing of what the ingest file held');
    t.ok(readFileSync(join(f.layerDir, 'diff', 'big')).equals(big));
    t.strictSame(staging(f.root), []);
  });
}

t.test('forged download records are refused as layer records are', async (t) => {
  const f = await fixture(t.testdir({}));
  const forged: [string, string][] = [
    ['a chain ID that does not follow', f.record('download', { chainID: `sha256:${'a'.repeat(64)}` })],
    ['a digest that is no digest (a path)', f.record('download', { digest: '../../etc/passwd' })],
    ['a relative store', f.record('download', { store: 'elsewhere' })],
  ];
  for (const [what, line] of forged) {
    const run = start(f.root);
    run.stdin.end(line);
    const { code, stderr } = await run.exited;
    t.equal(code, 2, what);
    t.match(stderr, /ERR_INPUT_RECORD/, what);
  }
  t.notOk(existsSync(f.layerDir));
});
