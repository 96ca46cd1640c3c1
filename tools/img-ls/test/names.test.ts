/**
 * img-ls answers to every name the store holds (skopeo's short names, bare
 * tags, containerd's image name), one row per image after a pull by digest,
 * and prints docker's IMAGE IDs with -q.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout, importToStore } from '../../../test/helpers/fixtures.js';
import { pushImage, rawManifest, startRegistry } from '../../../test/helpers/registry.js';
import { runTool } from '../../../test/helpers/tools.js';
import { matchesPattern } from '../src/list.js';

const imgLs = (args: string[]) => runTool('img-ls', args);

// [stored name, pattern, matches]: names as other tools write them.
const patterns: [string, string, boolean][] = [
  ['mybox:short', 'mybox', true],
  ['mybox:short', 'mybox:short', true],
  ['mybox:short', 'docker.io/library/mybox:short', true],
  ['mybox:short', 'mybox:long', false],
  ['mybox:short', 'myboxes', false],
  ['short', 'short', true],
  ['short', 'short:latest', true],
  ['Not A Name', 'Not A Name', true],
  ['Not A Name', 'mybox', false],
];
for (const [ref, pattern, expected] of patterns) {
  t.equal(matchesPattern(ref, pattern), expected, `${pattern} ${expected ? 'matches' : 'does not match'} ${ref}`);
}

t.test('an image skopeo wrote under a short name is found by every form of it, and layer-unpack runs on it', async (t) => {
  const root = t.testdir();
  importToStore(`${busyboxLayout()}:latest`, root, 'mybox:short');
  for (const pattern of ['mybox', 'mybox:short', 'docker.io/library/mybox:short']) {
    const result = await imgLs(['--root', root, pattern]);
    t.equal(result.code, 0, result.stderr);
    t.equal(result.records.length, 1, `img-ls ${pattern} finds it`);
    t.equal(result.records[0]?.ref, 'mybox:short', 'the record keeps the name as stored');
  }
  t.equal((await imgLs(['--root', root, 'mybox:long'])).records.length, 0, 'another tag is not it');

  const fetched = await runTool('img-fetch', ['--root', root, '--pull', 'never', '--no-layers', 'mybox:short']);
  t.equal(fetched.code, 0, `img-fetch --pull never mybox:short: ${fetched.stderr}`);
  t.equal(fetched.records[0]?.ref, 'docker.io/library/mybox:short');

  const listed = await imgLs(['--root', root, 'mybox']);
  const unpacked = await runTool('layer-unpack', ['--root', root], { input: listed.stdout });
  t.equal(unpacked.code, 0, unpacked.stderr);
  const rootfs = unpacked.records.find((r) => r.type === 'rootfs');
  t.equal(rootfs?.layerDirs?.length, listed.records[0].layers.length, 'every layer unpacked');
  t.equal(rootfs?.ref, 'mybox:short');
});

t.test('a containerd image name is a name too', async (t) => {
  const root = t.testdir();
  importToStore(`${busyboxLayout()}:latest`, root, 'anything');
  const indexPath = join(root, 'index.json');
  const index = JSON.parse(readFileSync(indexPath, 'utf8'));
  index.manifests[0].annotations = { 'io.containerd.image.name': 'registry.example:5000/team/box:v9' };
  writeFileSync(indexPath, JSON.stringify(index));
  const result = await imgLs(['--root', root, 'registry.example:5000/team/box']);
  t.equal(result.records.length, 1);
  t.equal(result.records[0].ref, 'registry.example:5000/team/box:v9');
  const table = await imgLs(['--root', root, '--table']);
  t.match(table.stdout, /\nregistry\.example:5000\/team\/box\s+v9\s/);
});

t.test('a pull by digest and by tag is one row; -a shows both; -q prints image ids; --digests the digest', async (t) => {
  const reg = await startRegistry();
  t.teardown(() => reg.stop());
  await pushImage(`${busyboxLayout()}:latest`, reg, 'team/bb:v1');
  const { digest } = await rawManifest(reg, 'team/bb:v1');
  const root = t.testdir();
  const byDigest = await runTool('img-fetch', ['--root', root, '--no-layers', `${reg.host}/team/bb@${digest}`]);
  t.equal(byDigest.code, 0, byDigest.stderr);
  const byTag = await runTool('img-fetch', ['--root', root, '--no-layers', `${reg.host}/team/bb:v1`]);
  t.equal(byTag.code, 0, byTag.stderr);

  const rows = await imgLs(['--root', root]);
  t.strictSame(
    rows.records.map((r) => r.ref),
    [`${reg.host}/team/bb:v1`],
    'one image, one row',
  );
  const all = await imgLs(['--root', root, '-a']);
  t.same(all.records.map((r) => r.ref).sort(), [`${reg.host}/team/bb:v1`, `${reg.host}/team/bb@${digest}`].sort());

  const ids = await imgLs(['--root', root, '-q']);
  const configHex = rows.records[0].configDescriptor.digest.slice(7, 19);
  t.equal(ids.stdout, `${configHex}\n`, "-q prints docker's IMAGE ID");
  t.equal((await imgLs(['--root', root, '--refs'])).stdout, `${reg.host}/team/bb:v1\n`);

  const table = await imgLs(['--root', root, '--table', '--digests']);
  t.match(table.stdout, /^REPOSITORY\s+TAG\s+DIGEST\s+IMAGE ID\s+CREATED\s+SIZE\n/);
  t.match(table.stdout, new RegExp(`team/bb\\s+v1\\s+${digest}\\s+${configHex}\\s`));
  const allTable = await imgLs(['--root', root, '--table', '-a']);
  t.match(allTable.stdout, /team\/bb\s+<none>\s/, 'the pinned entry shows with -a, tag <none>');

  t.ok(rows.records[0].unpackedSize > rows.records[0].size - 2000, 'SIZE is the unpacked size: at least the compressed layers');
  t.equal(rows.records[0].repoDigest, digest);
});
