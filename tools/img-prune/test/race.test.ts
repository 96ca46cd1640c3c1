/**
 * img-prune racing the store's writers, many times: a pull streaming into an
 * unpack (img-fetch | layer-unpack, from a real docker-registry) and an
 * unpack of an image no container uses. Whoever wins, the store stays
 * consistent: every blob index.json reaches is there with its digest, every
 * layer dir is whole, and a pull that a default prune raced still ends
 * tagged and unpacked. Without leases (lib-common/src/lease.ts) the prune
 * deletes blobs that landed before the pull tagged them: with img-fetch's
 * lease taken out, 3 of these 20 rounds ended with index.json naming missing
 * blobs (2026-11-29).
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout, importToStore } from '../../../test/helpers/fixtures.js';
import { pushImage, startRegistry, type TestRegistry } from '../../../test/helpers/registry.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { jsonLines, runTool, runToolSync, toolPath } from '../../../test/helpers/tools.js';

const ROUNDS = 20;
let reg: TestRegistry;

t.before(async () => {
  reg = await startRegistry();
  await pushImage(`${busyboxLayout()}:v2`, reg, 'race:v2');
});
t.teardown(() => reg?.stop());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs a bash pipeline of our tools; resolves with its exit status and output. */
function pipeline(script: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-o', 'pipefail', '-c', script], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** What is wrong with the store: blobs index.json reaches that are missing or hold other bytes, layer dirs that are not whole, staging debris. */
function problems(root: string): string[] {
  const found: string[] = [];
  const blob = (digest: string) => {
    const path = join(root, 'blobs', 'sha256', digest.slice(7));
    if (!existsSync(path)) found.push(`missing blob ${digest}`);
    else if (`sha256:${createHash('sha256').update(readFileSync(path)).digest('hex')}` !== digest) found.push(`blob ${digest} holds other bytes`);
    return path;
  };
  const index = existsSync(join(root, 'index.json')) ? JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')) : { manifests: [] };
  for (const entry of index.manifests) {
    const path = blob(entry.digest);
    if (!existsSync(path)) continue;
    const manifest = JSON.parse(readFileSync(path, 'utf8'));
    blob(manifest.config.digest);
    for (const layer of manifest.layers) blob(layer.digest);
  }
  const layers = join(root, 'layers');
  for (const name of existsSync(layers) ? readdirSync(layers) : []) {
    if (name.startsWith('.')) found.push(`debris layers/${name}`);
    else if (!existsSync(join(layers, name, 'meta.json')) || !existsSync(join(layers, name, 'diff'))) found.push(`layer ${name} is not whole`);
  }
  return found;
}

t.test(`img-fetch racing img-prune (${ROUNDS} rounds, default and -a)`, async (t) => {
  const outcomes = { tagged: 0, untagged: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    const root = tempStore('conveyor-race-');
    const all = round % 2 === 1;
    const pull = runTool('img-fetch', ['--root', root, '--plain-http', '-q', '--no-layers', `${reg.host}/race:v2`], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config' },
    });
    // Staggered so the prune lands before, during and after the downloads across rounds.
    await sleep((round * 53) % 400);
    const pruned = await runTool('img-prune', ['--root', root, ...(all ? ['-a'] : [])]);
    const pulled = await pull;
    const where = `round ${round}${all ? ' (-a)' : ''}`;
    t.equal(pruned.code, 0, `${where}: prune: ${pruned.stderr}`);
    t.equal(pulled.code, 0, `${where}: the pull succeeds: ${pulled.stderr}`);
    t.strictSame(problems(root), [], `${where}: the store is consistent`);
    const tagged = runToolSync('img-ls', ['--root', root, '-q']).stdout.trim() !== '';
    // A default prune never untags; -a untags an image no container uses when it runs after the pull.
    if (!all) t.ok(tagged, `${where}: the image stays tagged`);
    outcomes[tagged ? 'tagged' : 'untagged']++;
    removeStore(root);
  }
  t.comment(`outcomes: ${JSON.stringify(outcomes)}`);
});

t.test('img-fetch | layer-unpack racing img-prune (2 rounds): tagged and unpacked', async (t) => {
  for (let round = 0; round < 2; round++) {
    const root = tempStore('conveyor-race-');
    t.teardown(() => removeStore(root));
    const pull = pipeline(
      `${process.execPath} ${toolPath('img-fetch')} --root ${root} --plain-http -q ${reg.host}/race:v2 | ${process.execPath} ${toolPath('layer-unpack')} --root ${root}`,
    );
    await sleep(round * 150);
    const pruned = await runTool('img-prune', ['--root', root]);
    const pulled = await pull;
    t.equal(pruned.code, 0, `round ${round}: prune: ${pruned.stderr}`);
    t.equal(pulled.code, 0, `round ${round}: the pull and unpack succeed: ${pulled.stderr}`);
    t.strictSame(problems(root), [], `round ${round}: the store is consistent`);
    const rootfs = jsonLines(pulled.stdout).find((r) => r.type === 'rootfs');
    t.equal(rootfs?.layerDirs?.length, 2, `round ${round}: a rootfs record`);
    t.ok(
      rootfs?.layerDirs?.every((dir: string) => existsSync(join(dir, '..', 'meta.json'))),
      `round ${round}: its layer dirs are there`,
    );
  }
});

t.test('layer-unpack racing img-prune -a on an image no container uses (2 rounds)', async (t) => {
  const root = tempStore('conveyor-race-');
  t.teardown(() => removeStore(root));
  for (let round = 0; round < 2; round++) {
    importToStore(`${busyboxLayout()}:v2`, root, 'docker.io/library/busybox:v2');
    const image = runToolSync('img-ls', ['--root', root, '--json']).stdout;
    const unpack = runTool('layer-unpack', ['--root', root, '--log-format=json'], { input: image });
    await sleep((round * 37) % 150);
    const pruned = await runTool('img-prune', ['--root', root, '-a']);
    const unpacked = await unpack;
    t.equal(pruned.code, 0, `round ${round}: prune: ${pruned.stderr}`);
    // Before the prune it unpacks; after it, the blobs are gone: a clean error, never a half layer.
    t.ok(unpacked.code === 0 || unpacked.logs.some((l) => l.level === 'error' && l.code !== 'ERR_INTERNAL'), `round ${round}: unpack ok or a clean error`);
    t.strictSame(problems(root), [], `round ${round}: the store is consistent`);
  }
});
