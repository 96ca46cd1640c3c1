/**
 * img-prune on a real store: busybox imported by skopeo and unpacked by
 * layer-unpack, garbage of every kind planted beside it, a real detached
 * container (ctr-spawn -d) keeping its image, hostile stores and leases.
 * gc.ts's pure parts are tested in lib-common/test/gc.test.ts.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { acquireGcLock, acquireLease } from '@conveyor/lib-common/lease';
import { Store } from '@conveyor/lib-common/store';
import { busyboxLayout, importToStore } from '../../../test/helpers/fixtures.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool, runToolSync } from '../../../test/helpers/tools.js';

const prune = (root: string, args: string[] = []) => runTool('img-prune', ['--root', root, '--log-format=json', ...args]);

/** Every blob index.json reaches (manifests, configs, layers) exists and holds its digest. */
function assertConsistent(t: Tap.Test, root: string): void {
  const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8'));
  const check = (digest: string) => {
    const path = join(root, 'blobs', 'sha256', digest.slice(7));
    t.ok(existsSync(path), `blob ${digest.slice(7, 19)} present`);
    if (existsSync(path)) t.equal(`sha256:${createHash('sha256').update(readFileSync(path)).digest('hex')}`, digest, 'blob holds its digest');
  };
  for (const entry of index.manifests) {
    check(entry.digest);
    const manifest = JSON.parse(readFileSync(join(root, 'blobs', 'sha256', entry.digest.slice(7)), 'utf8'));
    check(manifest.config.digest);
    for (const layer of manifest.layers) check(layer.digest);
  }
}

function listTree(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: false }) as string[];
}

t.test('a store with garbage of every kind', async (t) => {
  const root = tempStore('conveyor-prune-');
  t.teardown(() => removeStore(root));
  importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/busybox:latest');
  importToStore(`${busyboxLayout()}:v2`, root, 'docker.io/library/busybox:v2');
  const images = runToolSync('img-ls', ['--root', root, '--json']).stdout;
  const unpack = runToolSync('layer-unpack', ['--root', root], { input: images });
  t.equal(unpack.code, 0, unpack.stderr);
  const kept = readdirSync(join(root, 'layers')).sort();
  t.equal(kept.length, 2, 'two chains unpacked');

  const plant = () => {
    const orphanBlob = 'c'.repeat(64);
    writeFileSync(join(root, 'blobs', 'sha256', orphanBlob), 'not referenced\n');
    writeFileSync(join(root, 'blobs', 'sha256', `${'d'.repeat(64)}.999999999.abcd.tmp`), 'a dead writer');
    // index.json's temp file of a writer killed inside its atomic write goes; a live writer's stays.
    writeFileSync(join(root, 'index.json.999999999.abcd.tmp'), '{}');
    writeFileSync(join(root, `index.json.${process.pid}.abcd.tmp`), '{}');
    mkdirSync(join(root, 'layers', 'e'.repeat(64), 'diff'), { recursive: true });
    writeFileSync(join(root, 'layers', 'e'.repeat(64), 'diff', 'file'), 'x'.repeat(10000));
    mkdirSync(join(root, 'layers', `.tmp-${'f'.repeat(64)}-999999999-1234`, 'diff'), { recursive: true });
    mkdirSync(join(root, 'ingest'), { recursive: true });
    writeFileSync(join(root, 'ingest', '1'.repeat(64)), 'partial');
    // img-import's staging files: a dead importer's goes, a live one's (this process, any start time) stays.
    writeFileSync(join(root, 'ingest', 'import-999999999.1.abcd'), 'staged by a crashed import');
    writeFileSync(join(root, 'ingest', `import-${process.pid}.0.abcd`), 'staged by a running import');
    mkdirSync(join(root, 'l'), { recursive: true });
    symlinkSync(`../layers/${'e'.repeat(64)}/diff`, join(root, 'l', 'toorphan'));
    symlinkSync(`../layers/${kept[0]}/diff`, join(root, 'l', 'tokept'));
    mkdirSync(join(root, 'flattened'), { recursive: true });
    const gone = '/tmp/conveyor-prune-no-such-tree';
    writeFileSync(
      join(root, 'flattened', `${createHash('sha256').update(gone).digest('hex')}.json`),
      JSON.stringify({ dir: gone, dev: '1', ino: '2', birth: '3' }),
    );
    // ctr-spawn's trash (a finished container dir renamed at its clean-up) goes; a symlink named like one is not followed.
    mkdirSync(join(root, 'tmp', `trash-${'a'.repeat(64)}`, 'upper', 'etc'), { recursive: true });
    writeFileSync(join(root, 'tmp', `trash-${'a'.repeat(64)}`, 'upper', 'etc', 'written'), 'y'.repeat(5000));
    mkdirSync(join(root, '..', 'not-trash'), { recursive: true });
    writeFileSync(join(root, '..', 'not-trash', 'keep'), 'outside the store');
    symlinkSync(join(root, '..', 'not-trash'), join(root, 'tmp', `trash-${'b'.repeat(64)}`));
  };
  plant();
  const kinds = ['blob', 'flattened', 'ingest', 'layer', 'link', 'staging', 'temp'];

  await t.test('--dry-run reports every kind and removes nothing', async (t) => {
    const before = listTree(root).sort();
    const run = await prune(root, ['--dry-run']);
    t.equal(run.code, 0, run.stderr);
    const freed = run.records.filter((r) => r.type === 'freed');
    t.strictSame([...new Set(freed.map((r) => r.kind))].sort(), kinds);
    t.strictSame(freed.map((r) => r.path).sort(), [
      `blobs/sha256/${'c'.repeat(64)}`,
      `blobs/sha256/${'d'.repeat(64)}.999999999.abcd.tmp`,
      `flattened/${createHash('sha256').update('/tmp/conveyor-prune-no-such-tree').digest('hex')}.json`,
      'index.json.999999999.abcd.tmp',
      `ingest/${'1'.repeat(64)}`,
      'ingest/import-999999999.1.abcd',
      'l/toorphan',
      `layers/.tmp-${'f'.repeat(64)}-999999999-1234`,
      `layers/${'e'.repeat(64)}`,
      `tmp/trash-${'a'.repeat(64)}`,
    ]);
    const total = run.records.at(-1)!;
    t.match(total, { type: 'total', v: 1, count: 10, dryRun: true, untagged: 0, store: root });
    t.equal(
      total.size,
      freed.reduce((sum, r) => sum + r.size, 0),
      'the total is the sum of the objects',
    );
    t.ok(total.size > 10000, 'the orphan layer counts its file');
    t.match(run.stderr, /Total reclaimable space: \d/);
    t.strictSame(listTree(root).sort(), before, 'nothing removed');
  });

  await t.test('prune removes exactly the garbage; the images stay whole and unpack from the cache', async (t) => {
    const run = await prune(root);
    t.equal(run.code, 0, run.stderr);
    t.equal(run.records.filter((r) => r.type === 'freed').length, 10);
    t.notOk(existsSync(join(root, 'tmp', `trash-${'a'.repeat(64)}`)), "ctr-spawn's trash is gone");
    t.ok(existsSync(join(root, '..', 'not-trash', 'keep')), 'nothing behind a symlink named as trash is removed');
    t.notOk(existsSync(join(root, 'index.json.999999999.abcd.tmp')), "a dead writer's index.json temp file is gone");
    t.ok(existsSync(join(root, `index.json.${process.pid}.abcd.tmp`)), "a live writer's stays");
    rmSync(join(root, `index.json.${process.pid}.abcd.tmp`));
    t.match(run.stderr, /Total reclaimed space: \d+(\.\d+)?kB/);
    t.strictSame(readdirSync(join(root, 'layers')).sort(), kept, 'the images\u2019 layers stay');
    t.strictSame(readdirSync(join(root, 'l')), ['tokept']);
    t.strictSame(readdirSync(join(root, 'ingest')), [`import-${process.pid}.0.abcd`], 'a live import keeps its staging file');
    t.strictSame(readdirSync(join(root, 'flattened')), []);
    assertConsistent(t, root);
    const again = runToolSync('layer-unpack', ['--root', root], { input: images });
    t.equal(again.code, 0, again.stderr);
    const second = await prune(root);
    t.match(second.records, [{ type: 'total', count: 0, size: 0 }], 'a second prune finds nothing');
  });

  await t.test('-a keeps what a running container uses, and the container keeps working', async (t) => {
    const v2 = runToolSync('img-ls', ['--root', root, '--json', 'busybox:v2']).stdout;
    const rootfs = runToolSync('layer-unpack', ['--root', root], { input: v2 }).stdout;
    const spawn = await runTool(
      'ctr-spawn',
      [
        '--root',
        root,
        '-d',
        '--',
        'sh',
        '-c',
        'trap "exit 0" TERM; while true; do cat /hello.txt > /tmp/seen.new && mv /tmp/seen.new /tmp/seen; sleep 0.1; done',
      ],
      {
        input: rootfs,
      },
    );
    t.equal(spawn.code, 0, spawn.stderr);
    const id = spawn.records[0]?.id as string;
    t.teardown(() => runToolSync('ctr-rm', ['--root', root, '-f', id]));
    const run = await prune(root, ['-a']);
    t.equal(run.code, 0, run.stderr);
    t.strictSame(
      run.records.filter((r) => r.type === 'untagged').map((r) => r.ref),
      ['docker.io/library/busybox:latest'],
      'only the image no container uses is untagged',
    );
    t.strictSame(readdirSync(join(root, 'layers')).sort(), kept, 'v2 has both chains: both stay');
    t.same(runToolSync('img-ls', ['--root', root, '--refs']).stdout.trim().split('\n'), ['docker.io/library/busybox:v2'], 'v2 is still listed');
    assertConsistent(t, root);
    const state = JSON.parse(readFileSync(join(root, 'containers', id, 'state.json'), 'utf8'));
    t.equal(state.status, 'running');
    const merged = join(root, 'containers', id, 'merged');
    rmSync(join(merged, 'tmp', 'seen'), { force: true });
    for (let i = 0; i < 50 && !existsSync(join(merged, 'tmp', 'seen')); i++) await new Promise((r) => setTimeout(r, 100));
    t.equal(readFileSync(join(merged, 'tmp', 'seen'), 'utf8'), 'hello from v2\n', 'the container still reads its image');

    // Stopped, it still keeps its image (Docker: a container that exists keeps its image).
    t.equal(runToolSync('ctr-stop', ['--root', root, '-t', '1', id]).code, 0);
    const stopped = await prune(root, ['-a']);
    t.equal(stopped.code, 0, stopped.stderr);
    t.strictSame(
      stopped.records.filter((r) => r.type !== 'total'),
      [],
      'nothing of a stopped container\u2019s image goes',
    );

    t.equal(runToolSync('ctr-rm', ['--root', root, '-f', id]).code, 0);
    const all = await prune(root, ['-a']);
    t.equal(all.code, 0, all.stderr);
    t.strictSame(readdirSync(join(root, 'layers')), [], 'with the container gone, -a frees everything');
    t.strictSame(readdirSync(join(root, 'blobs', 'sha256')), []);
    t.strictSame(JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')).manifests, []);
  });
});

t.test('usage errors exit 2', async (t) => {
  const root = tempStore('conveyor-prune-');
  t.teardown(() => removeStore(root));
  const cases = [['--bogus'], ['busybox'], ['--timeout', 'soon'], ['--timeout', '-1']];
  const runs = await Promise.all(cases.map((args) => prune(root, args)));
  cases.forEach((args, i) => {
    t.equal(runs[i].code, 2, args.join(' '));
    t.equal(runs[i].logs[0]?.code, 'ERR_USAGE', args.join(' '));
  });
});

t.test('hostile store contents are kept or refused, never followed', async (t) => {
  const root = tempStore('conveyor-prune-');
  t.teardown(() => removeStore(root));
  importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/busybox:latest');
  const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8'));
  const junk = 'sha256:' + createHash('sha256').update('{not json').digest('hex');
  writeFileSync(join(root, 'blobs', 'sha256', junk.slice(7)), '{not json');
  index.manifests.push(
    null,
    { mediaType: 'x', digest: 'sha256:../../../etc', size: 1 },
    { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: junk, size: 9 },
  );
  writeFileSync(join(root, 'index.json'), JSON.stringify(index));
  // A container whose state is not JSON, and one naming a digest that is a path.
  const bad = join(root, 'containers', '1'.repeat(64));
  const forged = join(root, 'containers', '2'.repeat(64));
  mkdirSync(bad, { recursive: true });
  mkdirSync(forged, { recursive: true });
  writeFileSync(join(bad, 'state.json'), '{"id":');
  writeFileSync(join(forged, 'state.json'), JSON.stringify({ id: '2'.repeat(64), status: 'exited', image: '../../../etc/passwd', store: root }));
  const run = await prune(root, ['-a']);
  t.equal(run.code, 0, run.stderr);
  t.ok(
    run.logs.some((l) => l.level === 'warn' && /not JSON/.test(l.message)),
    'the unreadable container state is warned about',
  );
  const after = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8'));
  t.strictSame(after.manifests.slice(0, 2), [null, { mediaType: 'x', digest: 'sha256:../../../etc', size: 1 }], 'malformed entries are kept as they are');
  t.equal(after.manifests.length, 2, '-a untagged the well-formed ones');
  t.ok(existsSync('/etc/passwd'), 'nothing outside the store was touched');

  writeFileSync(join(root, 'index.json'), '{"manifests": 5');
  const corrupt = await prune(root);
  t.equal(corrupt.code, 1);
  t.equal(corrupt.logs.at(-1)?.code, 'ERR_STORE_CORRUPT');
});

t.test('a live lease makes prune wait (then time out, removing nothing); a dead one is cleared', async (t) => {
  const root = tempStore('conveyor-prune-');
  t.teardown(() => removeStore(root));
  const store = new Store(root);
  await store.init();
  writeFileSync(join(root, 'blobs', 'sha256', 'c'.repeat(64)), 'garbage');
  const lease = await acquireLease(store);
  const waited = await prune(root, ['--timeout', '0.3']);
  t.equal(waited.code, 1);
  t.equal(waited.logs.at(-1)?.code, 'ERR_STORE_LOCKED');
  t.ok(
    waited.logs.some((l) => l.level === 'info' && /waiting for 1 pull/.test(l.message)),
    'it says what it waits for',
  );
  t.ok(existsSync(join(root, 'blobs', 'sha256', 'c'.repeat(64))), 'nothing removed while a writer is in flight');
  await lease.release();

  // The lease of a process that died (kill -9): its token names a pid that is gone.
  mkdirSync(join(root, 'leases', '0123456789abcdef.lock'), { recursive: true });
  writeFileSync(join(root, 'leases', '0123456789abcdef.lock', '999999999.12345.abcdef'), '');
  const run = await prune(root, ['--timeout', '5']);
  t.equal(run.code, 0, run.stderr);
  t.match(run.records, [
    { type: 'freed', kind: 'blob' },
    { type: 'total', count: 1 },
  ]);
  t.strictSame(readdirSync(join(root, 'leases')), [], 'the dead lease is gone');

  // The other side: a writer asking for a lease while a prune holds the gc lock waits for it.
  const gc = await acquireGcLock(store);
  let released = false;
  let told = false;
  const leased = acquireLease(store, { onWait: () => (told = true) }).then((l) => {
    t.ok(released, 'the lease is granted only after the prune released the gc lock');
    return l;
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  released = true;
  await gc.release();
  await (await leased).release();
  t.ok(told, 'the writer was told it waits');
});
