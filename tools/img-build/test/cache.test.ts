/**
 * The build cache, through build() with a counting tool runner: an unchanged
 * rebuild spawns nothing (no img-fetch, layer-unpack or ctr-spawn) and gives
 * the same image digest; a changed context file reruns from its COPY on
 * (earlier steps cached); a file touched without a content change keeps the
 * cache; a changed --build-arg reruns from its ARG; a missing blob makes a
 * miss that is rewritten; --no-cache runs everything and still writes; a
 * same-size, same-mtime content change misses through the content-hash cache.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import t from 'tap';
import { Store } from '@conveyor/lib-common/store';
import { build } from '../dist/build.js';
import { writeCacheEntry } from '../dist/cache.js';
import { openContext } from '../dist/context.js';
import { StepProgress } from '../dist/progress.js';
import { DefaultToolRunner } from '../dist/tools.js';
import { runImage, storeWithBusybox, contextDir } from './helpers/build.js';
import { busyboxLayout } from '../../../test/helpers/fixtures.js';
import { pushImage, startRegistry } from '../../../test/helpers/registry.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';

const store = storeWithBusybox();
t.teardown(() => store.cleanup());
const root = store.root;

interface Run {
  digest: string;
  spawned: Record<string, number>;
  /** `cached` of each step after FROM, in order. */
  cached: boolean[];
}

async function buildOnce(
  context: string,
  options: { buildArgs?: Record<string, string>; noCache?: boolean; tag?: string; root?: string; pull?: boolean } = {},
): Promise<Run> {
  const storeRoot = options.root ?? root;
  const toolArgs = [`--root=${storeRoot}`];
  const runner = new DefaultToolRunner(process.execPath);
  const stderr = new PassThrough();
  let events = '';
  stderr.setEncoding('utf8').on('data', (d: string) => (events += d));
  const result = await build({
    store: new Store(storeRoot),
    context: await openContext(context, undefined),
    dockerfile: { text: (await import('node:fs')).readFileSync(join(context, 'Dockerfile'), 'utf8'), name: 'Dockerfile' },
    tags: [options.tag ?? 'docker.io/library/cached:1'],
    buildArgs: new Map(Object.entries(options.buildArgs ?? {})),
    noCache: options.noCache ?? false,
    pull: options.pull ?? false,
    labels: [],
    now: () => new Date(),
    runner,
    progress: new StepProgress(stderr, 'json'),
    fetchArgs: toolArgs,
    toolArgs,
    warn: () => undefined,
  });
  const done = events
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l))
    .filter((e) => e.action === 'step' && e.phase === 'done');
  return { digest: result.digest, spawned: runner.spawned, cached: done.slice(1).map((e) => e.cached) };
}

t.test('cache hits, misses and reruns', async (t) => {
  const context = contextDir(t, {
    Dockerfile:
      'FROM busybox\nARG V=1\nCOPY a.txt /a.txt\nRUN echo "v=$V" > /v.txt\nCOPY b.txt /b.txt\nRUN cat /a.txt /b.txt > /ab.txt\nCMD ["cat", "/ab.txt", "/v.txt"]\n',
    'a.txt': 'a\n',
    'b.txt': 'b\n',
  });

  const first = await buildOnce(context);
  t.strictSame(first.cached, [false, false, false, false, false, false]);
  t.equal(first.spawned['ctr-spawn'], 2, 'two RUNs');
  t.ok(first.spawned['layer-unpack'] >= 1, 'layers unpacked for the first mount');

  const second = await buildOnce(context);
  t.equal(second.digest, first.digest, 'an unchanged rebuild gives the same image');
  t.strictSame(second.spawned, {}, 'an unchanged rebuild spawns nothing');
  t.strictSame(second.cached, [true, true, true, true, true, true]);

  const now = new Date(Date.now() + 5000);
  utimesSync(join(context, 'a.txt'), now, now);
  const touched = await buildOnce(context);
  t.equal(touched.digest, first.digest, 'a new mtime without a content change keeps the cache');
  t.strictSame(touched.spawned, {});

  writeFileSync(join(context, 'b.txt'), 'B\n');
  const changed = await buildOnce(context);
  t.strictSame(changed.cached, [true, true, true, false, false, false], 'reruns from the changed COPY on');
  t.equal(changed.spawned['ctr-spawn'], 1, 'only the RUN after the change runs');
  t.not(changed.digest, first.digest);
  t.equal(runImage(root, 'cached:1', []).stdout, 'a\nB\nv=1\n');

  const arg = await buildOnce(context, { buildArgs: { V: '2' } });
  t.strictSame(arg.cached, [false, false, false, false, false, false], 'a changed build arg reruns from its ARG on');
  t.equal(runImage(root, 'cached:1', []).stdout, 'a\nB\nv=2\n');
  const argAgain = await buildOnce(context, { buildArgs: { V: '2' } });
  t.strictSame(argAgain.spawned, {}, 'the same build arg again is cached');
  t.equal(argAgain.digest, arg.digest);
});

t.test('a same-size, same-mtime content change (ctime touched) still misses; the content-hash cache is used', async (t) => {
  const context = contextDir(t, { Dockerfile: 'FROM busybox\nCOPY c.txt /c.txt\nCMD ["cat", "/c.txt"]\n', 'c.txt': 'one\n' });
  // Older than the racy margin, so its hash is recorded by stat.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const first = await buildOnce(context, { tag: 'docker.io/library/ctime:1' });
  const hashes = readdirSync(join(root, 'build-hashes')).map((name) => readFileSync(join(root, 'build-hashes', name), 'utf8'));
  t.ok(
    hashes.some((text) => text.includes(join(context, 'c.txt'))),
    'the file hash is recorded',
  );
  const again = await buildOnce(context, { tag: 'docker.io/library/ctime:1' });
  t.strictSame(again.cached, [true, true], 'unchanged: hits');
  const path = join(context, 'c.txt');
  const { atime, mtime } = statSync(path);
  writeFileSync(path, 'two\n');
  utimesSync(path, atime, mtime);
  const changed = await buildOnce(context, { tag: 'docker.io/library/ctime:1' });
  t.strictSame(changed.cached, [false, false], 'the COPY reruns');
  t.not(changed.digest, first.digest);
  t.equal(runImage(root, 'ctime:1', []).stdout, 'two\n');
});

t.test('a cache entry whose blob is gone is a miss, and is rewritten', async (t) => {
  const context = contextDir(t, { Dockerfile: 'FROM busybox\nRUN echo gone > /gone.txt\n', x: '' });
  const first = await buildOnce(context, { tag: 'docker.io/library/gone:1' });
  const image = JSON.parse((await import('node:fs')).readFileSync(join(root, 'index.json'), 'utf8')).manifests.find(
    (m: any) => m.annotations?.['org.opencontainers.image.ref.name'] === 'docker.io/library/gone:1',
  );
  const manifest = JSON.parse((await import('node:fs')).readFileSync(join(root, 'blobs', 'sha256', image.digest.slice(7)), 'utf8'));
  rmSync(join(root, 'blobs', 'sha256', manifest.layers.at(-1).digest.slice(7)));
  const second = await buildOnce(context, { tag: 'docker.io/library/gone:1' });
  t.strictSame(second.cached, [false], 'the RUN ran again');
  t.equal(second.spawned['ctr-spawn'], 1);
  const third = await buildOnce(context, { tag: 'docker.io/library/gone:1' });
  t.strictSame(third.cached, [true], 'the rewritten entry hits');
  t.not(first.digest, undefined);
});

t.test('--no-cache runs every step and still writes the cache', async (t) => {
  const context = contextDir(t, { Dockerfile: 'FROM busybox\nRUN echo nocache > /n.txt\nENV N=1\n' });
  const entries = () => readdirSync(join(root, 'build-cache')).length;
  const before = entries();
  const first = await buildOnce(context, { noCache: true, tag: 'docker.io/library/nocache:1' });
  t.strictSame(first.cached, [false, false]);
  t.equal(entries(), before + 2, 'both steps written');
  const again = await buildOnce(context, { noCache: true, tag: 'docker.io/library/nocache:1' });
  t.strictSame(again.cached, [false, false]);
  t.equal(again.spawned['ctr-spawn'], 1);
  const cached = await buildOnce(context, { tag: 'docker.io/library/nocache:1' });
  t.strictSame(cached.cached, [true, true]);
  t.equal(cached.digest, again.digest, 'the cache holds what the last --no-cache build made');
});

t.test('FROM an image the store lacks: pulled once with img-fetch, then taken from the store (--pull fetches again)', async (t) => {
  const registry = await startRegistry();
  t.teardown(() => registry.stop());
  await pushImage(`${busyboxLayout()}:latest`, registry, 'base/busybox:1');
  const fresh = tempStore('conveyor-build-pull-');
  t.teardown(() => removeStore(fresh));
  const context = contextDir(t, { Dockerfile: `FROM ${registry.host}/base/busybox:1\nRUN echo pulled > /p\n` });
  const first = await buildOnce(context, { root: fresh, tag: 'docker.io/library/pulled:1' });
  t.strictSame(first.spawned, { 'img-fetch': 1, 'layer-unpack': 1, 'ctr-spawn': 1 }, 'the base is pulled into layer-unpack, then the RUN runs');
  t.strictSame(first.cached, [false]);
  const second = await buildOnce(context, { root: fresh, tag: 'docker.io/library/pulled:1' });
  t.strictSame(second.spawned, {}, 'then found in the store: nothing spawned');
  t.equal(second.digest, first.digest);
  const pulled = await buildOnce(context, { root: fresh, tag: 'docker.io/library/pulled:1', pull: true });
  t.strictSame(pulled.spawned, { 'img-fetch': 1 }, '--pull asks the registry again');
  t.strictSame(pulled.cached, [true], 'the same base manifest keeps the cache');
});

t.test("writing a cache entry removes the entry temp files of dead builds, a live one's kept", async (t) => {
  // As a build SIGKILLed inside an entry's atomic write leaves them (test/crash.test.ts kills real builds).
  const own = tempStore('conveyor-build-cache-');
  t.teardown(() => removeStore(own));
  const dir = join(own, 'build-cache');
  mkdirSync(dir, { recursive: true });
  const dead = `${'a'.repeat(64)}.json.999999999.abcd.tmp`;
  const live = `${'b'.repeat(64)}.json.${process.pid}.abcd.tmp`;
  writeFileSync(join(dir, dead), '{');
  writeFileSync(join(dir, live), '{');
  const key = `sha256:${'c'.repeat(64)}`;
  const config = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } } as never;
  await writeCacheEntry(new Store(own), key, { config, layers: [] }, undefined, new Date());
  t.strictSame(readdirSync(dir).sort(), [`${'b'.repeat(64)}.json.${process.pid}.abcd.tmp`, `${'c'.repeat(64)}.json`]);
});
