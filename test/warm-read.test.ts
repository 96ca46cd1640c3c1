/**
 * The warm read path (issue 17): `img-fetch --pull=missing | layer-unpack` of an image already in the store,
 * and img-ls, answer from the store alone (no registry is reachable here) with the records they gave before,
 * without loading what only a pull or an unpack needs: node:crypto (small blobs are hashed in JavaScript,
 * lib-common digest.ts), node:child_process, node:worker_threads. A preload (NODE_OPTIONS) writes the builtins
 * each tool loaded when it exits. A blob corrupted in the store is still refused. With stdout and stderr
 * pipes (sockets here), records and log lines are written without process.stdout/stderr (lib-common
 * fd-output.ts): no node:net or node:stream either.
 */
import t from 'tap';
import type tap from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxRootfs, removeStore, tempStore } from './helpers/rootfs.js';
import { runTool } from './helpers/tools.js';

const HEAVY = ['crypto', 'child_process', 'worker_threads'];
/** What a pipe's process.stdout or process.stderr (a net.Socket) would load. */
const STREAMS = ['net', 'stream'];

t.test('a warm read loads no crypto, child process or worker module, and answers as before', async (t) => {
  const root = tempStore('conveyor-warm-');
  t.teardown(() => removeStore(root));
  const rootfs = busyboxRootfs(root);
  const ref = 'docker.io/library/busybox:latest';
  const dir = t.testdir();
  const preload = join(dir, 'builtins.cjs');
  writeFileSync(
    preload,
    "process.on('exit', () => require('node:fs').writeFileSync(process.env.BUILTINS_OUT, process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13)).join('\\n')));\n",
  );
  let n = 0;
  // Our preload only: the test runner's NODE_OPTIONS would load its own hooks (and node:crypto) into the tools.
  const traced = async (tool: string, args: string[], input?: string) => {
    const out = join(dir, `builtins-${n++}`);
    const env = { PATH: process.env.PATH, HOME: process.env.HOME, NODE_OPTIONS: `--require ${preload}`, BUILTINS_OUT: out };
    const run = await runTool(tool, args, { input, env });
    return { run, builtins: readFileSync(out, 'utf8').split('\n') };
  };
  const unloaded = (t: typeof tap, builtins: string[], tool: string) => {
    for (const name of HEAVY) t.notOk(builtins.includes(name), `${tool} did not load node:${name}`);
    for (const name of STREAMS) t.notOk(builtins.includes(name), `${tool} did not load node:${name} (no stdio stream)`);
  };

  const fetched = await traced('img-fetch', ['--root', root, '--pull=missing', ref]);
  t.equal(fetched.run.code, 0, fetched.run.stderr);
  const image = fetched.run.records.find((r) => r.type === 'image');
  t.equal(image?.digest, rootfs.digest, 'the image record names the stored manifest');
  t.strictSame(image?.layers, rootfs.layers);
  t.equal(fetched.run.records.filter((r) => r.type === 'layer').length, rootfs.layers.length, 'a layer record per layer');
  unloaded(t, fetched.builtins, 'img-fetch');

  const unpacked = await traced('layer-unpack', ['--root', root], fetched.run.stdout);
  t.equal(unpacked.run.code, 0, unpacked.run.stderr);
  t.strictSame(
    unpacked.run.records.map((r) => [r.type, r.layerDirs]),
    [['rootfs', rootfs.layerDirs]],
    'the present layer is reused',
  );
  unloaded(t, unpacked.builtins, 'layer-unpack');

  const listed = await traced('img-ls', ['--root', root, '--json']);
  t.equal(listed.run.code, 0, listed.run.stderr);
  t.strictSame(
    listed.run.records.map((r) => [r.ref, r.digest]),
    [[ref, rootfs.digest]],
  );
  unloaded(t, listed.builtins, 'img-ls');

  // Corrupted under us: the config blob no longer holds its digest's bytes.
  const config = join(root, 'blobs', 'sha256', rootfs.configDescriptor.digest.slice('sha256:'.length));
  writeFileSync(config, readFileSync(config, 'utf8').replace('"architecture"', '"Architecture"'));
  const refused = await traced('img-fetch', ['--root', root, '--pull=never', ref]);
  t.not(refused.run.code, 0, 'img-fetch refuses the image');
  t.notOk(
    refused.run.records.some((r) => r.type === 'image'),
    'and prints no image record',
  );
  const corrupt = await traced('img-ls', ['--root', root, '--json']);
  t.match(`${corrupt.run.stderr}${JSON.stringify(corrupt.run.errors)}`, /ERR_STORE_CORRUPT|holds sha256:/, 'img-ls says the blob is corrupt');
});
