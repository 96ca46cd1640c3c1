/**
 * ctr-spawn's volumes on real containers (runc, the busybox fixture): a named
 * volume written by one container and read by another; an image VOLUME
 * seeded from the image and gone with the container (foreground, -d --rm;
 * ctr-rm -v in tools/vol-rm's test), a named one kept; --mount type=volume; a VOLUME path that is a
 * file, a symlink out of the rootfs, bad names. The image's VOLUMEs are
 * written into the rootfs record's config, where ctr-spawn reads them. Units:
 * the -v forms and the image's Volumes, table-driven.
 */
import t from 'tap';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deleteAllContainers, startDetached, stateOf, waitForState } from '../../../test/helpers/containers.js';
import { execFileSync } from 'node:child_process';
import { busyboxLayout, importToStore } from '../../../test/helpers/fixtures.js';
import { busyboxRootfs, imageRecord, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';
import { parseMount, parseVolume } from '../src/options.js';
import { imageVolumePaths, parseVolumeFlag } from '../src/volumes.js';

const root = tempStore('conveyor-volumes-');
t.teardown(async () => {
  await deleteAllContainers(root);
  removeStore(root);
});
const busybox = busyboxRootfs(root);
const withVolumes = (volumes: string[]) => ({ ...busybox, config: { ...busybox.config, Volumes: Object.fromEntries(volumes.map((v) => [v, {}])) } });
const spawn = (record: object, args: string[], command: string[]) =>
  runTool('ctr-spawn', ['--root', root, ...args, '--', ...command], { input: JSON.stringify(record) + '\n' });
const volumesDir = join(root, 'volumes');
const volumeNames = () => (existsSync(volumesDir) ? readdirSync(volumesDir).sort() : []);
const anonymous = () => volumeNames().filter((n) => /^[0-9a-f]{64}$/.test(n));

t.test('a named volume: written by one container, read by another, kept after both', async (t) => {
  const write = await spawn(busybox, ['-v', 'shared:/data'], ['sh', '-c', 'echo hello > /data/greeting && id -u > /data/uid']);
  t.equal(write.code, 0, write.stderr);
  const read = await spawn(
    busybox,
    ['-u', '1000', '--mount', 'type=volume,src=shared,dst=/mnt/in,readonly'],
    ['sh', '-c', 'cat /mnt/in/greeting; grep " /mnt/in " /proc/mounts | grep -q " ro," && echo read-only'],
  );
  t.equal(read.code, 0, read.stderr);
  t.equal(read.stdout, 'hello\nread-only\n', "the second container (uid 1000) reads the first one's file; readonly holds");
  t.equal(readFileSync(join(volumesDir, 'shared', '_data', 'greeting'), 'utf8'), 'hello\n', 'under <store>/volumes/NAME/_data');
  const meta = JSON.parse(readFileSync(join(volumesDir, 'shared', 'meta.json'), 'utf8'));
  t.match(meta, { name: 'shared', anonymous: false, createdAt: String });
});

t.test('an image VOLUME: seeded from the image, mounted, removed with the foreground container', async (t) => {
  const before = anonymous();
  // /etc is in busybox: its files are copied up into the new volume, and writes land in the volume.
  const run = await spawn(
    withVolumes(['/etc', '/cache']),
    [],
    ['sh', '-c', 'grep -c ^root: /etc/passwd; grep -E " /(etc|cache) " /proc/mounts | wc -l; echo x > /cache/y'],
  );
  t.equal(run.code, 0, run.stderr);
  t.equal(run.stdout, '1\n2\n', '/etc/passwd seeded into the volume; /etc and /cache are mounts');
  t.strictSame(anonymous(), before, 'both anonymous volumes went with the container');
});

t.test('a real image with VOLUME /cache (umoci): img-ls | layer-unpack | ctr-spawn sees its content, owner kept', async (t) => {
  // The busybox fixture plus a layer holding /cache/seed (owned by 1000) and VOLUME /cache, built by umoci.
  const work = t.testdir();
  const layout = join(work, 'layout');
  execFileSync('cp', ['-a', busyboxLayout(), layout]);
  const bundle = join(work, 'bundle');
  execFileSync('umoci', ['unpack', '--image', `${layout}:latest`, bundle], { stdio: 'pipe' });
  mkdirSync(join(bundle, 'rootfs', 'cache'));
  writeFileSync(join(bundle, 'rootfs', 'cache', 'seed'), 'from the image\n');
  execFileSync('chown', ['-R', '1000:1000', join(bundle, 'rootfs', 'cache')]);
  execFileSync('umoci', ['repack', '--image', `${layout}:vol`, bundle], { stdio: 'pipe' });
  execFileSync('umoci', ['config', '--image', `${layout}:vol`, '--tag', 'vol', '--config.volume', '/cache'], { stdio: 'pipe' });
  importToStore(`${layout}:vol`, root, 'example.com/vol:1');
  const image = imageRecord(root, 'example.com/vol:1');
  t.strictSame(image.config.Volumes, { '/cache': {} }, 'the image declares the volume');
  const unpack = await runTool('layer-unpack', ['--root', root], { input: JSON.stringify(image) + '\n' });
  t.equal(unpack.code, 0, unpack.stderr);
  const before = anonymous();
  const run = await spawn(
    unpack.records.find((r) => r.type === 'rootfs')!,
    [],
    ['sh', '-c', 'cat /cache/seed; stat -c %u /cache/seed /cache; grep -c " /cache " /proc/mounts'],
  );
  t.equal(run.code, 0, run.stderr);
  t.equal(run.stdout, 'from the image\n1000\n1000\n1\n', 'seeded, owners kept, a mount of its own');
  t.strictSame(anonymous(), before, 'removed with the container');
});

t.test('a -v or --tmpfs on the VOLUME path wins over the anonymous volume', async (t) => {
  const run = await spawn(withVolumes(['/cache', '/scratch']), ['-v', 'mine:/cache', '--tmpfs', '/scratch', '--print-spec'], []);
  t.equal(run.code, 0, run.stderr);
  const mounts = run.records[0].mounts as { destination: string; type: string; source: string }[];
  t.strictSame(
    mounts.filter((m) => m.destination === '/cache' || m.destination === '/scratch').map((m) => [m.destination, m.type, m.source]),
    [
      ['/cache', 'bind', join(volumesDir, 'mine', '_data')],
      ['/scratch', 'tmpfs', 'tmpfs'],
    ],
  );
});

t.test('-d --rm: the anonymous volume goes when the container ends, the named one stays', async (t) => {
  const before = anonymous();
  // It runs until the test drops a file into the named volume from the host.
  const started = await startDetached(
    root,
    withVolumes(['/cache']),
    ['--rm', '-v', 'kept:/kept'],
    ['sh', '-c', 'echo 1 > /kept/f; echo 2 > /cache/f; while [ ! -e /kept/go ]; do sleep 0.05; done'],
  );
  const volumes = stateOf(root, started.id)?.volumes as string[];
  t.equal(volumes.length, 2, 'state.json names its volumes');
  t.ok(volumes.includes('kept'));
  t.match(
    volumes.find((v) => v !== 'kept'),
    /^[0-9a-f]{64}$/,
  );
  writeFileSync(join(volumesDir, 'kept', '_data', 'go'), '');
  await waitForState(root, started.id, (s) => s === undefined);
  t.equal(stateOf(root, started.id), undefined, 'removed by its supervisor');
  t.strictSame(anonymous(), before, 'its anonymous volume removed');
  t.equal(readFileSync(join(volumesDir, 'kept', '_data', 'f'), 'utf8'), '1\n', 'the named one kept');
});

t.test('a VOLUME path that is a file in the image: exit 125, nothing left', async (t) => {
  const before = anonymous();
  const run = await spawn(withVolumes(['/etc/passwd']), [], ['true']);
  t.equal(run.code, 125);
  t.match(run.stderr, /cannot mount a volume at \/etc\/passwd: it is not a directory in the image/);
  t.strictSame(anonymous(), before, 'the volume made for it was removed with the failed run');
});

t.test('a VOLUME path that is a symlink out of the rootfs: no host file is copied', async (t) => {
  // A host directory with a secret, and an image whose /evil points at it (absolute) and /evil2 climbs out (relative).
  const host = join(root, 'host-secret');
  mkdirSync(host, { recursive: true });
  writeFileSync(join(host, 'secret'), 'host file\n');
  const layer = busybox.layerDirs[0] as string;
  symlinkSync(host, join(layer, 'evil'));
  symlinkSync('../../../../../../../../..' + host, join(layer, 'evil2'));
  t.teardown(() => {
    for (const l of ['evil', 'evil2']) rmSync(join(layer, l), { force: true });
  });
  const run = await spawn(withVolumes(['/evil', '/evil2']), ['-v', 'evilnamed:/evil3'], ['sh', '-c', 'ls -A /evil /evil2; echo done']);
  t.equal(run.code, 0, run.stderr);
  t.notMatch(run.stdout, /secret/, 'the host directory was not copied into the volumes');
  t.equal(readFileSync(join(host, 'secret'), 'utf8'), 'host file\n', 'and the host file is untouched');
});

t.test('bad volume names and flags: refused before anything runs (exit 125)', async (t) => {
  const cases: [string, () => unknown, RegExp][] = [
    ['-v a b:/x', () => parseVolume('a b:/x'), /invalid volume name "a b"/],
    ['-v x:/data', () => parseVolume('x:/data'), /invalid volume name "x"/],
    ['-v ../up:/data', () => parseVolume('../up:/data'), /host path must be absolute/],
    ['-v good:/data:nope', () => parseVolume('good:/data:nope'), /unknown mode "nope"/],
    ['-v good:/', () => parseVolume('good:/'), /cannot mount over \//],
    ['--mount src=../etc', () => parseMount('type=volume,src=../etc,dst=/data'), /invalid volume name/],
    ['--mount bogus=1', () => parseMount('type=volume,src=ok,dst=/data,bogus=1'), /unsupported field "bogus"/],
    ['--mount no dst', () => parseMount('type=volume,src=ok'), /no destination/],
  ];
  for (const [what, parse, message] of cases) t.throws(parse, { code: 'ERR_USAGE', message }, what);
  t.strictSame(parseMount('type=volume,dst=/anon,volume-nocopy'), { bind: { source: '', destination: '/anon', readOnly: false, volume: '', noCopy: true } });
  const run = await spawn(busybox, ['-v', '../etc:/data'], ['true']);
  t.equal(run.code, 125, 'ctr-spawn exits 125');
  t.match(run.stderr, /host path must be absolute/);
  t.notOk(existsSync(join(root, 'etc')), 'no directory made from a hostile name');
});

t.test('units: -v forms', async (t) => {
  const cp = (p: string) => p.replace(/\/$/, '');
  const cases: [string, unknown][] = [
    ['/data', { source: '', destination: '/data', readOnly: false, volume: '' }],
    ['cache:/var/cache', { source: '', destination: '/var/cache', readOnly: false, volume: 'cache' }],
    ['cache:/c:ro', { source: '', destination: '/c', readOnly: true, volume: 'cache' }],
    ['cache:/c:ro,nocopy', { source: '', destination: '/c', readOnly: true, volume: 'cache', noCopy: true }],
    ['/host:/ctr', undefined],
    ['./rel:/ctr', undefined],
  ];
  for (const [spec, expected] of cases) t.strictSame(parseVolumeFlag(spec, cp), expected, spec);
  t.throws(() => parseVolumeFlag('c:/c:ro,rw', cp), /ro and rw contradict/);
});

t.test('units: the image config Volumes', async (t) => {
  const cases: [unknown, string[]][] = [
    [{ '/cache': {}, '/data/': {} }, ['/cache', '/data']],
    [{ '/': {}, relative: {}, '/a/../b': {} }, ['/b']],
    [{ '/x': {}, '/x/': {} }, ['/x']],
    [['/cache'], []],
    [null, []],
    ['/cache', []],
  ];
  for (const [volumes, expected] of cases) t.strictSame(imageVolumePaths(volumes), expected, JSON.stringify(volumes));
});
