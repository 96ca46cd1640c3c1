/**
 * A store on a file system remounted read-only (a real ext4 loop mount,
 * test/helpers/loopfs.ts): every writer fails at its first write with
 * ERR_STORE_IO naming the store and EROFS in words, exit 1, and changes
 * nothing (img-fetch of a new image, layer-unpack of a layer not unpacked
 * yet, img-tag, img-build); the readers (img-ls, img-inspect) still work
 * on it. Remounted read-write, the same commands succeed. Root
 * only (mount).
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout } from './helpers/fixtures.js';
import { loopFilesystem } from './helpers/loopfs.js';
import { pushImage, startRegistry, type TestRegistry } from './helpers/registry.js';
import { runTool, type ToolResult } from './helpers/tools.js';

let reg: TestRegistry;
t.before(async () => {
  reg = await startRegistry();
  await Promise.all([pushImage(`${busyboxLayout()}:latest`, reg, 'busybox:latest'), pushImage(`${busyboxLayout()}:latest`, reg, 'other:1')]);
});
t.teardown(() => reg?.stop());

t.test('a read-only store: writers fail at the first write naming the store, readers work', async (t) => {
  const fs = loopFilesystem(t, 16);
  const root = join(fs.dir, 'store');
  const busybox = `${reg.host}/busybox:latest`;
  const fetched = await runTool('img-fetch', ['--root', root, busybox]);
  t.equal(fetched.code, 0, fetched.stderr);
  const context = t.testdir({ Dockerfile: `FROM ${busybox}\nRUN echo hi > /hi\n` });
  const index = readFileSync(join(root, 'index.json'), 'utf8');
  fs.readOnly(true);
  t.teardown(() => fs.readOnly(false));

  const writers: [string, string[], string?][] = [
    ['img-fetch', [`${reg.host}/other:1`]],
    ['layer-unpack', [], fetched.stdout],
    ['img-tag', [busybox, 'renamed:1']],
    ['img-build', ['-q', '-t', 'built:1', context]],
  ];
  for (const [tool, args, input] of writers) {
    const r: ToolResult = await runTool(tool, ['--root', root, '--log-format=json', ...args], { input });
    t.equal(r.code, 1, `${tool}: exit 1`);
    const error = r.logs.find((line) => line.code);
    t.equal(error?.code, 'ERR_STORE_IO', `${tool}: ERR_STORE_IO`);
    t.match(
      error?.message,
      new RegExp(`^store ${root}: .*${root}.*: read-only file system \\(EROFS\\)$`),
      `${tool}: names the store and EROFS (${error?.message})`,
    );
    t.match(error?.hint, /read-only mount: remount it read-write/, `${tool}: says what to do`);
  }
  t.equal(readFileSync(join(root, 'index.json'), 'utf8'), index, 'index.json unchanged');

  const ls = await runTool('img-ls', ['--root', root]);
  t.equal(ls.code, 0, `img-ls reads it: ${ls.stderr}`);
  t.strictSame(
    ls.records.map((r) => r.ref),
    [busybox],
  );
  t.notMatch(ls.stderr, /EROFS|read-only/, 'img-ls writes nothing, so nothing fails');
  const inspect = await runTool('img-inspect', ['--root', root, busybox]);
  t.equal(inspect.code, 0, `img-inspect reads it: ${inspect.stderr}`);
  t.equal(inspect.records[0]?.ref, busybox);
  // A check needs no lock on a store nothing can write; a repair fails at its first write.
  const check = await runTool('img-fsck', ['--root', root]);
  t.equal(check.code, 0, `img-fsck checks it: ${check.stderr}`);
  t.match(check.records.at(-1), { type: 'fsck', problems: 0 });
  t.ok((check.records.at(-1)?.checked as { blobs?: number } | undefined)?.blobs, 'blobs were rehashed');
  const repair = await runTool('img-fsck', ['--root', root, '--repair']);
  t.equal(repair.code, 1, 'img-fsck --repair fails on it');
  t.match(repair.stderr, /EROFS/);

  fs.readOnly(false);
  for (const [tool, args, input] of writers) {
    const r = await runTool(tool, ['--root', root, ...args], { input });
    t.equal(r.code, 0, `read-write again, ${tool} succeeds: ${r.stderr}`);
  }
  const after = await runTool('img-fsck', ['--root', root]);
  t.equal(after.code, 0, `img-fsck: clean (${after.stdout.trim()})`);
});
