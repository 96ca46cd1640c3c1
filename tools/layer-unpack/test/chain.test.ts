/**
 * Forged records against the layer cache: a record may not plant a tree under
 * another image's chain ID (issue 7, "a forged layer record poisons the layer
 * cache"), a layer directory is reused only when its meta.json matches, and a
 * record's store must be one only root (or we) can change.
 */
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { runToolSync } from '../../../test/helpers/tools.js';
import { imageRecords, storeImage } from './helpers/store.js';
import { makeTar } from './helpers/tars.js';

const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const hex = (digest: string) => digest.slice(7);

function unpack(root: string, input: string, extra: string[] = []) {
  return runToolSync('layer-unpack', ['--log-format=json', '--root', root, ...extra], { input });
}

type Layer = { mediaType: string; digest: string; size: number; diffID: string; chainID: string };
type Image = Record<string, any> & { ref: string; layers: Layer[]; store: string };

/** A store with a victim image and an attacker's image, each of two layers. */
async function twoImages(t: Tap.Test): Promise<{ root: string; victim: Image; attacker: Image }> {
  const root = join(t.testdir({}), 'store');
  await storeImage(root, 'localhost/victim:1', [
    await makeTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/who', content: 'victim base' },
    ]),
    await makeTar([{ name: 'app', content: 'victim app' }]),
  ]);
  await storeImage(root, 'localhost/attacker:1', [
    await makeTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/who', content: 'attacker base' },
    ]),
    await makeTar([{ name: 'app', content: 'attacker app' }]),
  ]);
  const { records } = imageRecords(root);
  const by = (ref: string) => records.find((r) => r.ref === ref) as Image;
  return { root, victim: by('localhost/victim:1'), attacker: by('localhost/attacker:1') };
}

function layerRecord(image: Image, i: number, over: Record<string, unknown> = {}): string {
  const record = {
    type: 'layer',
    v: 1,
    ...image.layers[i],
    ref: image.ref,
    index: i,
    count: image.layers.length,
    ...(i > 0 ? { parentChainID: image.layers[i - 1].chainID } : {}),
    store: image.store,
    ...over,
  };
  for (const [k, v] of Object.entries(record)) if (v === undefined) delete (record as Record<string, unknown>)[k];
  return JSON.stringify(record) + '\n';
}

/** The victim, unpacked after the attack, must hold its own files. */
function victimIntact(t: Tap.Test, root: string, victim: Image): void {
  const run = unpack(root, JSON.stringify(victim) + '\n');
  t.equal(run.code, 0, run.stderr);
  const [base, app] = run.records[0].layerDirs;
  t.equal(readFileSync(join(base, 'etc', 'who'), 'utf8'), 'victim base', 'victim bottom layer is its own');
  t.equal(readFileSync(join(app, 'app'), 'utf8'), 'victim app', 'victim top layer is its own');
}

t.test('forged records are refused before anything lands under the victim chain IDs', async (t) => {
  const cases: { name: string; input: (v: Image, a: Image) => string; status: number; code: string; match?: RegExp }[] = [
    {
      name: "layer record: the victim's chain ID over the attacker's diff (and blob)",
      input: (v, a) => layerRecord(a, 1, { chainID: v.layers[1].chainID, parentChainID: v.layers[0].chainID }),
      status: 2,
      code: 'ERR_INPUT_RECORD',
      match: /stdin:1: layer 1 chainID .* does not follow from its parentChainID and diffID/,
    },
    {
      name: "layer record: the victim's bottom chain ID over the attacker's bottom diff",
      input: (v, a) => layerRecord(a, 0, { chainID: v.layers[0].chainID }),
      status: 2,
      code: 'ERR_INPUT_RECORD',
      match: /stdin:1: layer 0 chainID/,
    },
    {
      name: 'layer record: a made-up chain ID',
      input: (v) => layerRecord(v, 1, { chainID: sha('made up') }),
      status: 2,
      code: 'ERR_INPUT_RECORD',
      match: /stdin:1:/,
    },
    {
      name: 'layer record above the bottom without parentChainID (chain taken as the diff ID)',
      input: (v, a) => layerRecord(a, 1, { parentChainID: undefined, chainID: v.layers[1].chainID }),
      status: 2,
      code: 'ERR_INPUT_RECORD',
      match: /stdin:1: layer 1 parentChainID/,
    },
    {
      name: 'bottom layer record with a parentChainID',
      input: (v, a) => layerRecord(a, 0, { parentChainID: v.layers[0].chainID }),
      status: 2,
      code: 'ERR_INPUT_RECORD',
      match: /stdin:1: the bottom layer/,
    },
    {
      name: 'layer record without index and count',
      input: (_v, a) => layerRecord(a, 0, { index: undefined, count: undefined }),
      status: 2,
      code: 'ERR_INPUT_RECORD',
      match: /stdin:1: layer index/,
    },
    {
      name: 'second line: a good record, then a forged one',
      input: (v, a) => layerRecord(v, 0) + layerRecord(a, 1, { chainID: v.layers[1].chainID, parentChainID: v.layers[0].chainID }),
      status: 2,
      code: 'ERR_INPUT_RECORD',
      match: /stdin:2:/,
    },
    {
      name: "image record: the victim's chain IDs over the attacker's diff IDs",
      input: (v, a) => JSON.stringify({ ...a, layers: a.layers.map((l, i) => ({ ...l, chainID: v.layers[i].chainID })) }) + '\n',
      status: 2,
      code: 'ERR_INPUT_RECORD',
      match: /stdin:1: layer 0 chainID/,
    },
    {
      name: "layer record: the victim's diff ID and chain over the attacker's blob (the content check fails)",
      input: (v, a) =>
        layerRecord(v, 1, { digest: a.layers[1].digest, size: a.layers[1].size }) +
        JSON.stringify({ ...v, layers: [v.layers[0], { ...v.layers[1], digest: a.layers[1].digest, size: a.layers[1].size }] }) +
        '\n',
      status: 1,
      code: 'ERR_DIGEST_MISMATCH',
    },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const { root, victim, attacker } = await twoImages(t);
      const run = unpack(root, c.input(victim, attacker));
      t.equal(run.code, c.status, run.stderr);
      t.match(run.stderr, `"code":"${c.code}"`);
      if (c.match) t.match(run.stderr, c.match);
      t.notOk(existsSync(join(root, 'layers', hex(victim.layers[1].chainID))), "nothing under the victim's top chain ID");
      victimIntact(t, root, victim);
    });
  }
});

t.test('a layer record whose chain follows from a made-up parent lands under a chain ID no image has', async (t) => {
  const { root, victim, attacker } = await twoImages(t);
  const parent = sha('nobody');
  const chainID = sha(`${parent} ${attacker.layers[1].diffID}`);
  const run = unpack(root, layerRecord(attacker, 1, { parentChainID: parent, chainID }));
  t.equal(run.code, 0, run.stderr);
  t.strictSame(run.records, [], 'layer records are consumed');
  const meta = JSON.parse(readFileSync(join(root, 'layers', hex(chainID), 'meta.json'), 'utf8'));
  t.match(meta, { chainID, diffID: attacker.layers[1].diffID, parentChainID: parent });
  t.equal(readFileSync(join(root, 'layers', hex(chainID), 'diff', 'app'), 'utf8'), 'attacker app', 'it holds the diff it names');
  victimIntact(t, root, victim);
});

t.test('meta.json records the parent chain ID; layer dirs are 0700', async (t) => {
  const { root, victim } = await twoImages(t);
  const run = unpack(root, JSON.stringify(victim) + '\n');
  t.equal(run.code, 0, run.stderr);
  const meta = (i: number) => JSON.parse(readFileSync(join(root, 'layers', hex(victim.layers[i].chainID), 'meta.json'), 'utf8'));
  t.equal(meta(0).parentChainID, null, 'bottom layer: null');
  t.equal(meta(1).parentChainID, victim.layers[0].chainID, 'above: the chain ID below');
  t.equal(statSync(join(root, 'layers', hex(victim.layers[1].chainID))).mode & 0o777, 0o700, 'layers/<chain> is 0700');
  t.equal(statSync(join(root, 'layers', hex(victim.layers[1].chainID), 'diff')).mode & 0o777, 0o755, 'diff/ (the container root) keeps 0755');
});

t.test('a planted layer dir is reused only when its meta.json matches', async (t) => {
  const plant = (root: string, victim: Image, attacker: Image, meta: (v: Image, a: Image) => Record<string, unknown> | undefined, asLink = false) => {
    const target = join(root, 'layers', hex(victim.layers[1].chainID));
    const dir = asLink ? join(root, 'elsewhere') : target;
    mkdirSync(join(dir, 'diff'), { recursive: true });
    writeFileSync(join(dir, 'diff', 'app'), 'planted');
    const m = meta(victim, attacker);
    if (m) writeFileSync(join(dir, 'meta.json'), JSON.stringify({ digest: attacker.layers[1].digest, unpackedBytes: 7, entries: 1, ...m }));
    if (asLink) symlinkSync(dir, target);
  };
  const cases: { name: string; meta: (v: Image, a: Image) => Record<string, unknown> | undefined; asLink?: boolean; reused: boolean }[] = [
    {
      name: 'meta with the chain ID but the diff ID of another layer',
      meta: (v, a) => ({ chainID: v.layers[1].chainID, diffID: a.layers[1].diffID, parentChainID: v.layers[0].chainID }),
      reused: false,
    },
    {
      name: 'meta with the chain ID and diff ID but another parent',
      meta: (v, a) => ({ chainID: v.layers[1].chainID, diffID: v.layers[1].diffID, parentChainID: a.layers[0].chainID }),
      reused: false,
    },
    {
      name: 'meta naming the layer as a bottom layer',
      meta: (v) => ({ chainID: v.layers[1].chainID, diffID: v.layers[1].diffID, parentChainID: null }),
      reused: false,
    },
    { name: 'meta with the chain ID only (what used to be enough)', meta: (v) => ({ chainID: v.layers[1].chainID }), reused: false },
    { name: 'no meta.json', meta: () => undefined, reused: false },
    {
      name: 'a symlink to a tree with a matching meta',
      meta: (v) => ({ chainID: v.layers[1].chainID, diffID: v.layers[1].diffID, parentChainID: v.layers[0].chainID }),
      asLink: true,
      reused: false,
    },
    // Metas written before parentChainID was recorded: sound (the chain ID binds the parent), and reused.
    {
      name: 'an older meta without parentChainID but matching chain and diff IDs',
      meta: (v) => ({ chainID: v.layers[1].chainID, diffID: v.layers[1].diffID }),
      reused: true,
    },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const { root, victim, attacker } = await twoImages(t);
      mkdirSync(join(root, 'layers'), { recursive: true });
      plant(root, victim, attacker, c.meta, c.asLink);
      const run = unpack(root, JSON.stringify(victim) + '\n');
      t.equal(run.code, 0, run.stderr);
      const dir = join(root, 'layers', hex(victim.layers[1].chainID));
      t.equal(run.records[0].layerDirs[1], join(dir, 'diff'));
      if (c.reused) {
        t.equal(readFileSync(join(dir, 'diff', 'app'), 'utf8'), 'planted', 'reused as it is');
        t.notMatch(run.stderr, /is not this layer/);
        return;
      }
      t.notOk(lstatSync(dir).isSymbolicLink(), 'a real directory now');
      t.equal(readFileSync(join(dir, 'diff', 'app'), 'utf8'), 'victim app', 'unpacked again from the blob');
      t.match(run.stderr, /"level":"warn".*is not this layer/);
      const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
      t.match(meta, { chainID: victim.layers[1].chainID, diffID: victim.layers[1].diffID, parentChainID: victim.layers[0].chainID });
      t.strictSame(
        readdirSync(join(root, 'layers')).filter((n) => n.startsWith('.tmp-')),
        [],
        'nothing left aside',
      );
      if (c.asLink) t.ok(existsSync(join(root, 'elsewhere', 'diff', 'app')), 'the symlink target is left alone');
    });
  }
});

t.test("a record's store must be one only root can change", async (t) => {
  const dir = t.testdir({});
  const { root, victim } = await twoImages(t);
  // The same store, spelled with a trailing slash, is still --root.
  const same = unpack(root, JSON.stringify({ ...victim, store: `${root}/` }) + '\n');
  t.equal(same.code, 0, same.stderr);

  const userStore = join(dir, 'user-store');
  mkdirSync(userStore);
  chownSync(userStore, 65534, 65534);
  const open = join(dir, 'open');
  mkdirSync(join(open, 'store'), { recursive: true });
  chmodSync(open, 0o777);
  const cases = [
    { name: 'owned by another user', store: userStore, kind: 'image' },
    { name: 'under a world-writable directory', store: join(open, 'store'), kind: 'image' },
    { name: 'owned by another user, in a layer record', store: userStore, kind: 'layer' },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const input = c.kind === 'image' ? JSON.stringify({ ...victim, store: c.store }) + '\n' : layerRecord(victim, 0, { store: c.store });
      const run = unpack(root, JSON.stringify({ type: 'note', v: 1 }) + '\n' + input);
      t.equal(run.code, 2, run.stderr);
      t.match(run.stderr, /"code":"ERR_INPUT_RECORD"/);
      t.match(run.stderr, /stdin:2: record names an unsafe store: store /);
      t.notOk(existsSync(join(c.store, 'layers')), 'nothing written in the untrusted store');
    });
  }
});
