/**
 * What keeps an unpack cheap and flat (issue 17), checked by structure, never
 * by time: a large file's data is held back while the writer has too much in
 * flight (a 1 GB file is never queued whole), the writer threads start only
 * for a layer that needs them, a small blob is inflated without a thread, and
 * a layer is renamed into place only once its tree is on disk (a syncfs that
 * started once its files were written) and its meta.json too (fsync of the
 * file and its directory), with layers/ fsynced after (strace), while the next
 * layer may already unpack (the --jobs place is given up before that sync).
 */
import { execFile } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { toolPath } from '../../../test/helpers/tools.js';
import type { Applier } from '../dist/apply/applier.js';
import { idleThreadCount, Writer, writerThreadCounts } from '../dist/apply/writer.js';
import { applyLayer, idleInflaterCount, inflaterCounts } from '../dist/read-layer.js';
import { Applier as RealApplier } from '../dist/apply/applier.js';
import { Limiter } from '../dist/records.js';
import { imageRecords, storeImage } from './helpers/store.js';
import { END, fileEntry, rawHeader } from './helpers/tars.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

/** A plain tar holding one file of `size` zero bytes, written in pieces (no buffer of its size). */
function bigTar(path: string, size: number): void {
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, rawHeader('big', '0', size));
    const zeros = Buffer.alloc(MiB);
    for (let left = size; left > 0; left -= zeros.length) writeSync(fd, zeros, 0, Math.min(left, zeros.length));
    writeSync(fd, Buffer.alloc((512 - (size % 512)) % 512));
    writeSync(fd, END);
  } finally {
    closeSync(fd);
  }
}

/**
 * An Applier stand-in that never writes: it counts the bytes handed to it and
 * frees them only when asked for room, as the writer frees them when its
 * thread has written them. The peak shows how much the reader queued.
 */
/** Unpacks the uncompressed layer `tar` into a new directory `root` as layer-unpack's applier does (flat, as root). */
async function unpackTar(tar: string, root: string, maxEntries: number): Promise<void> {
  mkdirSync(root);
  const applier = new RealApplier({ root, mode: 'flat', rootless: false, maxBytes: 2 ** 40, maxEntries, warn: () => undefined });
  try {
    applier.beginLayer(true);
    await applyLayer({ path: tar, compression: 'none', label: basename(root) }, applier);
    await applier.finish();
  } finally {
    await applier.close();
  }
}

function countingApplier(cap: number, roomDelayMs?: number) {
  const seen = { inflight: 0, peak: 0, total: 0, rooms: 0 };
  const applier = {
    opts: { maxBytes: 2 ** 40, maxEntries: 1000 },
    setFailureHandler: () => undefined,
    entry: async () => ({
      write(chunk: Uint8Array) {
        seen.inflight += chunk.length;
        seen.total += chunk.length;
        seen.peak = Math.max(seen.peak, seen.inflight);
      },
      end() {},
    }),
    get busy() {
      return seen.inflight > cap;
    },
    room: () =>
      new Promise<void>((resolve) => {
        const freed = () => {
          seen.rooms++;
          seen.inflight = 0;
          resolve();
        };
        // A slow disk: the parser waits while the inflate thread could run far ahead.
        if (roomDelayMs === undefined) setImmediate(freed);
        else setTimeout(freed, roomDelayMs);
      }),
    finishLayer: async () => undefined,
  };
  return { applier: applier as unknown as Applier, seen };
}

t.test('a large file is held back while the writer is busy: what is queued stays bounded', async (t) => {
  const dir = t.testdir({});
  const tar = join(dir, 'big.tar');
  const size = 48 * MiB;
  bigTar(tar, size);
  const cap = 2 * MiB;
  const { applier, seen } = countingApplier(cap);
  const result = await applyLayer({ path: tar, compression: 'none', label: 'big' }, applier);
  t.equal(seen.total, size, 'every byte of the file reached the writer');
  t.equal(result.tarBytes, statSync(tar).size);
  t.ok(seen.rooms > 1, 'the reader waited for room inside the file');
  // One chunk may pass the cap before the reader sees it busy; never the whole file.
  t.ok(seen.peak <= cap + 2 * MiB, `at most the cap and a chunk queued (peak ${seen.peak} bytes of a ${size}-byte file)`);
});

t.test('what the inflate thread ran ahead waits there: little reaches the main thread before it is parsed', async (t) => {
  const dir = t.testdir({});
  const tar = join(dir, 'big.tar');
  const size = 32 * MiB;
  bigTar(tar, size);
  const { applier, seen } = countingApplier(MiB, 5);
  const result = await applyLayer({ path: tar, compression: 'none', label: 'big' }, applier);
  t.equal(seen.total, size, 'every byte of the file reached the writer');
  t.ok(seen.rooms > 8, 'the parser waited for room again and again');
  // Received and not yet parsed: the Readable's 256 KiB mark plus the thread's 512 KiB of credit
  // and a chunk. Chunks that waited longer outlived the main thread's young collections (young-gc.ts).
  const peak = result.peakBufferedBytes;
  t.ok(peak !== undefined && peak <= MiB + 256 * 1024, `at most ~1 MiB waited unparsed in the main thread (peak ${peak})`);
});

t.test('the writer: inline for a few small files, threads for a streamed one, in flight bounded', async (t) => {
  const dir = t.testdir({});
  const meta = { uid: 0, gid: 0, mode: 0o644, atime: 0, mtime: 0, chown: false };
  const small = new Writer(2);
  for (let i = 0; i < 10; i++) small.file(join(dir, `small-${i}`), [Buffer.from(`file ${i}`)], `file ${i}`.length, meta);
  await small.drain();
  t.equal(small.threadsUsed, 0, 'ten small files: no thread started');
  t.equal(readFileSync(join(dir, 'small-7'), 'utf8'), 'file 7');
  await small.stop();

  const big = new Writer(2);
  t.teardown(() => big.stop());
  const id = big.open(join(dir, 'streamed'));
  const chunk = Buffer.alloc(256 * 1024, 7);
  const chunks = 160;
  for (let i = 0; i < chunks; i++) {
    big.write(id, chunk);
    // As read-layer.ts does: wait for room when the writer says it is full.
    if (big.full) await big.room();
  }
  big.close(id, meta);
  await big.drain();
  t.equal(big.failed, undefined);
  t.equal(big.threadsUsed, 1, 'a streamed file: one thread');
  t.equal(statSync(join(dir, 'streamed')).size, chunks * chunk.length, 'the whole file written');
  // Full as soon as a chunk does not fit in the thread's 4 MiB ring: none waits uncopied beside it.
  t.ok(big.peakInflightBytes <= 4 * MiB + chunk.length, `in flight stays within the ring (peak ${big.peakInflightBytes})`);
  t.ok(big.peakInflightBytes < (chunks * chunk.length) / 4, 'never the whole file');

  // Its thread is kept for the next Writer, which writes through it.
  await big.stop();
  const idle = idleThreadCount();
  t.ok(idle >= 1, 'the thread is idle in the pool after a clean stop');
  const next = new Writer(2);
  const again = next.open(join(dir, 'again'));
  t.equal(idleThreadCount(), idle - 1, 'the next Writer takes it');
  next.write(again, chunk);
  next.close(again, meta);
  await next.drain();
  t.equal(next.failed, undefined);
  t.equal(statSync(join(dir, 'again')).size, chunk.length, 'written through the reused thread');
  await next.stop();
  t.equal(idleThreadCount(), idle, 'and back in the pool');

  // A Writer that stops with a file still open does not pool its thread (its descriptor is in it).
  const open = new Writer(2);
  const left = open.open(join(dir, 'left-open'));
  open.write(left, chunk);
  await open.drain();
  await open.stop();
  t.equal(idleThreadCount(), idle - 1, 'not pooled: ended');
});

t.test('two Writers share the threads: one using both gives one up to one that has none', async (t) => {
  const dir = t.testdir({});
  const meta = { uid: 0, gid: 0, mode: 0o644, atime: 0, mtime: 0, chown: false };
  // Past the 256 operations run inline, a Writer takes a thread per lane while the cap (2) allows.
  const a = new Writer(2);
  const b = new Writer(2);
  t.teardown(async () => {
    await a.stop();
    await b.stop();
  });
  let most = 0;
  const write = (w: Writer, name: string, from: number, to: number) => {
    for (let i = from; i < to; i++) {
      w.file(join(dir, `${name}-${i}`), [Buffer.from(`${name} ${i}`)], `${name} ${i}`.length, meta);
      most = Math.max(most, writerThreadCounts().alive);
    }
  };
  write(a, 'a', 0, 400);
  await a.drain();
  t.equal(a.threadsUsed, 2, 'alone, the first Writer uses two threads');
  // The second gets one only if the first gives one up: a drain that waited for nothing else would never end.
  write(b, 'b', 0, 400);
  write(a, 'a', 400, 500);
  await Promise.all([a.drain(), b.drain()]);
  t.equal(a.failed, undefined);
  t.equal(b.failed, undefined);
  t.ok(b.threadsUsed >= 1, 'the second Writer got a thread while the first still had work');
  t.ok(most <= 2, `never more than 2 threads alive (most ${most})`);
  t.ok(writerThreadCounts().peak <= 2, `peak ${writerThreadCounts().peak}`);
  t.equal(readFileSync(join(dir, 'a-499'), 'utf8'), 'a 499');
  t.equal(readFileSync(join(dir, 'b-399'), 'utf8'), 'b 399');
  await a.stop();
  await b.stop();
  t.ok(idleThreadCount() <= 2, 'kept idle for the next layers');
});

t.test('two layers unpacked at once (--jobs 2) share the threads: never more writers alive than --threads, one inflate thread', async (t) => {
  const dir = t.testdir({});
  // Each layer wants threads: more small files than run inline, then a streamed one, then small ones again.
  const layerTar = (name: string) => {
    const files = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => fileEntry(`${name}-${from + i}`, `${name} ${from + i}`));
    return Buffer.concat([...files(0, 400), fileEntry(`${name}-big`, Buffer.alloc(3 * MiB, 1)), ...files(400, 800), END]);
  };
  const unpack = async (name: string) => {
    const tar = join(dir, `${name}.tar`);
    writeFileSync(tar, layerTar(name));
    const root = join(dir, name);
    await unpackTar(tar, root, 10000);
    return root;
  };
  let most = 0;
  let reading = 0;
  const sampler = setInterval(() => {
    most = Math.max(most, writerThreadCounts().alive);
    reading = Math.max(reading, inflaterCounts().reading);
  }, 1);
  let roots: string[];
  try {
    roots = await Promise.all([unpack('a'), unpack('b')]);
  } finally {
    clearInterval(sampler);
  }
  for (const [i, name] of ['a', 'b'].entries()) {
    t.equal(readFileSync(join(roots[i], `${name}-799`), 'utf8'), `${name} 799`, `layer ${name}: its small files written`);
    t.equal(statSync(join(roots[i], `${name}-big`)).size, 3 * MiB, `layer ${name}: its streamed file written`);
  }
  // Every Writer here has 2 threads (the --threads default): at most 2 alive, idle or in use.
  t.ok(most <= 2, `at most 2 writer threads alive while both ran (sampled ${most})`);
  t.ok(writerThreadCounts().peak <= 2, `at most 2 alive at any time (peak ${writerThreadCounts().peak})`);
  t.ok(writerThreadCounts().peak >= 1, 'the layers did use threads');
  // Both blobs (over 1 MiB: inflated on a thread) were read by one thread.
  t.ok(reading <= 1, `one inflate thread read both blobs (most reading at once: ${reading})`);
});

/** The system calls of one name in an `strace -f -y` log: the line each started on (its arguments) and the line it ended on. */
function calls(lines: string[], name: string): { start: number; end: number; text: string }[] {
  const found: { start: number; end: number; text: string }[] = [];
  lines.forEach((line, i) => {
    if (!line.includes(`${name}(`) || line.includes('resumed')) return;
    // strace -f interleaves threads and processes: a call started in one line and finished in another
    // shows as `<unfinished ...>`, then `<... NAME resumed>` on a later line of the same pid.
    const pid = line.split(' ')[0];
    const end = line.includes('<unfinished') ? lines.findIndex((l, j) => j > i && l.startsWith(`${pid} `) && l.includes(`${name} resumed`)) : i;
    found.push({ start: i, end, text: line });
  });
  return found;
}

t.test('a layer is renamed into place only once its tree (a syncfs started after its files) and meta.json (fsync) are on disk (strace)', async (t) => {
  const dir = t.testdir({});
  const root = join(dir, 'store');
  mkdirSync(root);
  const tars = [0, 1, 2, 3].map((i) => Buffer.concat([fileEntry(`layer-${i}`, `content ${i}`), END]));
  await storeImage(root, 'localhost/four:1', tars);
  const { text } = imageRecords(root);
  const input = join(dir, 'records.ndjson');
  writeFileSync(input, text);
  const log = join(dir, 'strace.log');
  await run('bash', [
    '-c',
    `strace -f -qq -y -e trace=syncfs,fsync,openat,close,rename,renameat,renameat2 -o ${log} node ${toolPath('layer-unpack')} --root ${root} < ${input} > ${join(dir, 'out')}`,
  ]);
  const out = readFileSync(join(dir, 'out'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.equal(out.length, 1);
  t.equal(out[0].layerDirs.length, 4);
  const lines = readFileSync(log, 'utf8').split('\n');
  const syncfs = calls(lines, 'syncfs');
  const fsyncs = calls(lines, 'fsync');
  t.ok(syncfs.length >= 1, 'syncfs ran');
  t.ok(syncfs.length <= 4, `at most one syncfs per layer (${syncfs.length} for 4)`);
  const layers = join(root, 'layers');
  for (const [i] of tars.entries()) {
    const hex = out[0].layerDirs[i].split('/').at(-2);
    const staging = new RegExp(`<${layers}/\\.tmp-${hex}-\\d+-[0-9a-f]+`);
    const written = lines.findIndex((l) => /^\d+ +close\(/.test(l) && staging.test(l) && l.includes(`/diff/layer-${i}>`));
    const metaOpened = lines.findIndex((l) => /openat\(/.test(l) && l.includes(`.tmp-${hex}-`) && l.includes('meta.json'));
    const renamed = lines.findIndex((l) => /rename/.test(l) && l.includes(`.tmp-${hex}-`) && !l.includes('-old"') && l.includes(`/layers/${hex}"`));
    t.ok(written >= 0 && renamed > written, `layer ${i}: its file written (closed), then the layer renamed`);
    t.ok(
      syncfs.some((c) => c.start > written && c.end >= 0 && c.end < renamed),
      `layer ${i}: a syncfs started after its file was written and ended before its rename`,
    );
    t.ok(
      fsyncs.some((c) => c.start > metaOpened && c.end >= 0 && c.end < renamed && staging.test(c.text) && c.text.includes('/meta.json>')),
      `layer ${i}: meta.json fsynced after it was written, before the rename`,
    );
    t.ok(
      fsyncs.some((c) => c.start > metaOpened && c.end >= 0 && c.end < renamed && new RegExp(`${staging.source}>[) ]`).test(c.text)),
      `layer ${i}: the staging dir (meta.json's name) fsynced before the rename`,
    );
    t.ok(
      fsyncs.some((c) => c.start > renamed && (c.text.includes(`<${layers}>)`) || c.text.includes(`<${layers}> `))),
      `layer ${i}: layers/ fsynced after the rename`,
    );
  }
});

t.test('Limiter: a task that gives its place up lets the next one start before it ends', async (t) => {
  const limiter = new Limiter(1);
  const order: string[] = [];
  let finishA!: () => void;
  const aWaits = new Promise<void>((resolve) => (finishA = resolve));
  const a = limiter.run(async (release) => {
    order.push('a applies');
    release();
    release(); // twice is once
    await aWaits;
    order.push('a commits');
  });
  const b = limiter.run(async () => {
    order.push('b applies');
  });
  const c = limiter.run(async () => {
    order.push('c applies');
  });
  await b;
  await c;
  t.strictSame(order, ['a applies', 'b applies', 'c applies'], 'b and c ran while a waited, one at a time');
  finishA();
  await a;
  // Without release the place is held to the end.
  const held: string[] = [];
  let finishD!: () => void;
  const dWaits = new Promise<void>((resolve) => (finishD = resolve));
  const d = limiter.run(async () => {
    held.push('d');
    await dWaits;
    held.push('d ends');
  });
  const e = limiter.run(async () => {
    held.push('e');
  });
  await new Promise((resolve) => setImmediate(resolve));
  t.strictSame(held, ['d'], 'e waits for d');
  finishD();
  await Promise.all([d, e]);
  t.strictSame(held, ['d', 'd ends', 'e']);
});

t.test('an inflate thread that read a blob to its end is kept for the next; one that failed is not', async (t) => {
  const dir = t.testdir({});
  const tar = join(dir, 'two-mib.tar');
  bigTar(tar, 2 * MiB);
  const unpackOnce = async (name: string) => {
    const root = join(dir, name);
    await unpackTar(tar, root, 1000);
    return statSync(join(root, 'big')).size;
  };
  t.equal(await unpackOnce('one'), 2 * MiB);
  const idle = idleInflaterCount();
  t.ok(idle >= 1, 'kept after a clean read');
  t.equal(await unpackOnce('two'), 2 * MiB, 'the next blob read through it');
  t.equal(idleInflaterCount(), idle, 'taken and given back: none started beside it');
  // A gzip blob whose stream is corrupt past its first bytes: the thread reports it and is ended.
  const bad = join(dir, 'bad.gz');
  writeFileSync(bad, Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), Buffer.alloc(2 * MiB, 0xff)]));
  const root = join(dir, 'bad');
  mkdirSync(root);
  const applier = new RealApplier({ root, mode: 'flat', rootless: false, maxBytes: 2 ** 40, maxEntries: 1000, warn: () => undefined });
  applier.beginLayer(true);
  await t.rejects(applyLayer({ path: bad, compression: 'gzip', label: 'bad' }, applier), { code: 'ERR_LAYER_INVALID' });
  await applier.close();
  t.equal(idleInflaterCount(), idle - 1, 'the failed thread is not kept');
});

t.test('a blob that fails on a shared inflate thread fails alone: the other blob read there completes', async (t) => {
  const dir = t.testdir({});
  const good = join(dir, 'good.tar');
  bigTar(good, 8 * MiB);
  // Corrupt past its first bytes: the thread reports it while the good blob is still being read.
  const bad = join(dir, 'bad.gz');
  writeFileSync(bad, Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), Buffer.alloc(2 * MiB, 0xff)]));
  const unpack = async (name: string, path: string, compression: 'none' | 'gzip') => {
    const root = join(dir, name);
    mkdirSync(root);
    const applier = new RealApplier({ root, mode: 'flat', rootless: false, maxBytes: 2 ** 40, maxEntries: 1000, warn: () => undefined });
    try {
      applier.beginLayer(true);
      await applyLayer({ path, compression, label: name }, applier);
      await applier.finish();
    } finally {
      await applier.close();
    }
    return statSync(join(root, 'big')).size;
  };
  let reading = 0;
  const sampler = setInterval(() => (reading = Math.max(reading, inflaterCounts().reading)), 1);
  try {
    const [ok, failed] = await Promise.allSettled([unpack('good', good, 'none'), unpack('bad', bad, 'gzip')]);
    t.equal(failed.status, 'rejected');
    t.equal((failed as PromiseRejectedResult).reason?.code, 'ERR_LAYER_INVALID', 'the corrupt blob fails');
    t.equal(ok.status === 'fulfilled' && ok.value, 8 * MiB, 'the other blob is read to its end');
  } finally {
    clearInterval(sampler);
  }
  t.ok(reading <= 1, `one thread read both (most reading at once: ${reading})`);
  t.equal(inflaterCounts().reading, 0, 'nothing left reading');
});
