/**
 * follow-file.ts: a blob read while another process appends to it. It yields
 * the file's bytes in order up to the declared size, waits at the end while
 * the file may still grow, and fails (ERR_FOLLOW_CHANGED) as soon as the file
 * it holds cannot become the blob: shrunk, replaced, short at the commit, not
 * a regular file, a symlink. A destroyed follower stops polling at once.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { followFile, POLL_MS } from '../dist/follow-file.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Everything the follower yields, or its error. */
function drain(stream: NodeJS.ReadableStream): Promise<{ bytes: Buffer; error?: NodeJS.ErrnoException }> {
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ bytes: Buffer.concat(chunks) }));
    stream.on('error', (error) => resolve({ bytes: Buffer.concat(chunks), error: error as NodeJS.ErrnoException }));
  });
}

const blob = randomBytes(3 * 256 * 1024 + 1234);

interface Case {
  name: string;
  /** Plays the writer: the file is `path`; commit() says the blob is in. */
  play(path: string, commit: () => void): Promise<void>;
  /** Bytes the follower yields before it ends or fails (default all of the blob). */
  yields?: Buffer;
  /** Its error's code, when it must fail. */
  fails?: string;
}

const cases: Case[] = [
  {
    name: 'appended in pieces after the follower started (before the file existed)',
    play: async (path, commit) => {
      await sleep(3 * POLL_MS);
      for (let at = 0; at < blob.length; at += 100_000) {
        appendFileSync(path, blob.subarray(at, Math.min(blob.length, at + 100_000)));
        await sleep(POLL_MS / 2);
      }
      commit();
    },
  },
  {
    name: 'renamed away while the follower waits at its end (its name is gone, the file is not)',
    play: async (path, commit) => {
      writeFileSync(path, blob.subarray(0, 1000));
      await sleep(5 * POLL_MS);
      renameSync(path, `${path}.committed`);
      await sleep(5 * POLL_MS);
      appendFileSync(`${path}.committed`, blob.subarray(1000));
      commit();
    },
  },
  {
    name: 'longer than the declared size: read up to the size only',
    play: async (path, commit) => {
      writeFileSync(path, Buffer.concat([blob, Buffer.from('trailing bytes of a lying registry')]));
      commit();
    },
  },
  {
    name: 'short when the blob is committed',
    play: async (path, commit) => {
      writeFileSync(path, blob.subarray(0, 1000));
      await sleep(3 * POLL_MS);
      commit();
    },
    yields: blob.subarray(0, 1000),
    fails: 'ERR_FOLLOW_CHANGED',
  },
  {
    name: 'shrunk below what was read (started over)',
    play: async (path) => {
      writeFileSync(path, blob.subarray(0, 300_000));
      await sleep(5 * POLL_MS);
      truncateSync(path, 10);
    },
    yields: blob.subarray(0, 300_000),
    fails: 'ERR_FOLLOW_CHANGED',
  },
  {
    name: 'replaced by another file (removed and downloaded again)',
    play: async (path) => {
      writeFileSync(path, blob.subarray(0, 300_000));
      await sleep(5 * POLL_MS);
      rmSync(path);
      writeFileSync(path, blob);
    },
    yields: blob.subarray(0, 300_000),
    fails: 'ERR_FOLLOW_CHANGED',
  },
  {
    name: 'never made, and the blob committed (it went in another way)',
    play: async (_path, commit) => {
      await sleep(3 * POLL_MS);
      commit();
    },
    yields: Buffer.alloc(0),
    fails: 'ERR_FOLLOW_CHANGED',
  },
  {
    name: 'a FIFO: neither opened for good nor waited on',
    play: async (path) => mkfifoSync(path),
    yields: Buffer.alloc(0),
    fails: 'ERR_FOLLOW_CHANGED',
  },
  {
    name: 'a symlink to the very bytes: not followed',
    play: async (path) => {
      writeFileSync(`${path}.elsewhere`, blob);
      symlinkSync(`${path}.elsewhere`, path);
    },
    yields: Buffer.alloc(0),
    fails: 'ERR_FOLLOW_CHANGED',
  },
];

// node:fs has no mkfifo.
function mkfifoSync(path: string): void {
  execFileSync('mkfifo', [path]);
}

for (const c of cases) {
  t.test(c.name, async (t) => {
    const path = join(t.testdir({}), 'ingest');
    const follower = followFile(path, blob.length);
    const read = drain(follower);
    await c.play(path, () => follower.commit());
    const { bytes, error } = await read;
    t.equal(error?.code, c.fails, error ? `fails: ${error.message}` : 'ends');
    t.ok(bytes.equals(c.yields ?? blob), `yields ${bytes.length} bytes, as written`);
  });
}

t.test('destroyed while waiting for bytes: stops at once and closes the file', async (t) => {
  const path = join(t.testdir({}), 'ingest');
  writeFileSync(path, blob.subarray(0, 10));
  const holding = () =>
    readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === path;
      } catch {
        return false;
      }
    }).length;
  const follower = followFile(path, blob.length);
  const read = drain(follower);
  await sleep(5 * POLL_MS);
  t.equal(holding(), 1, 'the file is open while followed');
  follower.destroy(new Error('the input ended'));
  const { bytes, error } = await read;
  t.equal(error?.message, 'the input ended');
  t.equal(bytes.length, 10);
  appendFileSync(path, blob.subarray(10));
  await sleep(5 * POLL_MS);
  t.equal(holding(), 0, 'closed');
});
