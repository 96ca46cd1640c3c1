/**
 * Hostile input to img-build: COPY sources outside the context (`../`, an
 * absolute path, a context symlink to /etc), a base image whose /app is a
 * symlink to / or to a host directory (COPY and WORKDIR through it stay in the
 * rootfs), and forged build-cache entries (a blob whose bytes are not its
 * digest, a path instead of a digest, a symlinked entry): each is refused or
 * a miss, and nothing is written on the host.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, copyFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { containerDirs, imgBuild, runImage, stepEvents, storeWithBusybox, contextDir } from './helpers/build.js';

const store = storeWithBusybox();
t.teardown(() => store.cleanup());
const root = store.root;

function errorOf(result: { logs: Record<string, any>[] }) {
  return result.logs.find((l) => l.level === 'error' && l.tool === 'img-build');
}

t.test('COPY sources outside the context are refused; an absolute source is inside the context', async (t) => {
  const context = contextDir(t, { inner: { Dockerfile: '' }, secret: 'outside the context\n' });
  const ctx = join(context, 'inner');
  for (const source of ['../secret', '../../secret', 'a/../../secret']) {
    writeFileSync(join(ctx, 'Dockerfile'), `FROM busybox\nCOPY ${source} /stolen\n`);
    const result = await imgBuild(root, ['--log-format=json', '-t', 'hostile:up', ctx]);
    t.equal(result.code, 1, `${source}: refused`);
    t.equal(errorOf(result)?.code, 'ERR_BUILD_SOURCE', `${source}: ${errorOf(result)?.message}`);
  }
  writeFileSync(join(ctx, 'Dockerfile'), 'FROM busybox\nCOPY /etc/passwd /stolen\n');
  const missing = await imgBuild(root, ['--log-format=json', ctx]);
  t.equal(errorOf(missing)?.code, 'ERR_BUILD_SOURCE', "/etc/passwd is the context's etc/passwd, which is not there");
  const { mkdirSync } = await import('node:fs');
  mkdirSync(join(ctx, 'etc'));
  writeFileSync(join(ctx, 'etc', 'passwd'), 'from the context\n');
  const inside = await imgBuild(root, ['-t', 'hostile:abs', ctx]);
  t.equal(inside.code, 0, inside.stderr);
  t.equal(runImage(root, 'hostile:abs', ['cat', '/stolen']).stdout, 'from the context\n');
  t.strictSame(containerDirs(root), []);
});

t.test('a context symlink to /etc resolves inside the context, and is copied as a link', async (t) => {
  const context = contextDir(t, { Dockerfile: '' });
  symlinkSync('/etc', join(context, 'hostetc'));
  // As BuildKit: a source path follows the link scoped to the context, where there is no etc/.
  for (const source of ['hostetc/passwd', 'hostetc']) {
    writeFileSync(join(context, 'Dockerfile'), `FROM busybox\nCOPY ${source} /p\n`);
    const through = await imgBuild(root, ['--log-format=json', context]);
    t.equal(through.code, 1, `${source}: not found in the context`);
    t.equal(errorOf(through)?.code, 'ERR_BUILD_SOURCE');
  }
  writeFileSync(join(context, 'Dockerfile'), 'FROM busybox\nCOPY . /ctx/\n');
  const link = await imgBuild(root, ['-t', 'hostile:link', context]);
  t.equal(link.code, 0, link.stderr);
  t.equal(runImage(root, 'hostile:link', ['readlink', '/ctx/hostetc']).stdout, '/etc\n', 'the symlink itself, as Docker copies it');
});

t.test('COPY and WORKDIR through a base image symlink stay inside the rootfs', async (t) => {
  const hostDir = mkdtempSync('/tmp/conveyor-hostile-');
  t.teardown(() => rmSync(hostDir, { recursive: true, force: true }));
  const marker = `conveyor-hostile-${randomBytes(6).toString('hex')}`;
  const base = contextDir(t, {
    Dockerfile: `FROM busybox\nRUN ln -s / /app && mkdir -p /tmp && ln -s ${hostDir} /hostdir\n`,
  });
  const built = await imgBuild(root, ['-t', 'hostile:base', base]);
  t.equal(built.code, 0, built.stderr);
  const context = contextDir(t, {
    Dockerfile: `FROM hostile:base\nCOPY ${marker} /app/\nCOPY ${marker} /hostdir/\nWORKDIR /hostdir/sub\nRUN pwd > /where\n`,
    [marker]: 'planted\n',
  });
  const result = await imgBuild(root, ['-t', 'hostile:through', context]);
  t.equal(result.code, 0, result.stderr);
  t.notOk(existsSync(join('/', marker)), 'nothing written at the host root');
  t.strictSame(readdirSync(hostDir), [], 'nothing written in the host directory the image link names');
  const inside = runImage(root, 'hostile:through', ['sh', '-c', `cat /${marker} ${hostDir}/${marker}; cat /where; test -d ${hostDir}/sub && echo subdir`]);
  t.equal(inside.stdout, `planted\nplanted\n${hostDir}/sub\nsubdir\n`, 'the files landed inside the image, where its links point');
});

t.test('a USER or WORKDIR that looks like a ctr-spawn flag stays a value', async (t) => {
  const context = contextDir(t, { Dockerfile: 'FROM busybox\nARG U=--privileged\nUSER $U\nRUN grep CapEff /proc/self/status\n' });
  const result = await imgBuild(root, ['--log-format=json', context]);
  t.equal(result.code, 1, 'the RUN does not run privileged: the user does not exist');
  t.match(errorOf(result), { code: 'ERR_BUILD_STEP', message: /exited with code 125 .*--privileged/ });
  t.notMatch(result.stderr, /CapEff:\s/, 'the command never ran');
});

t.test('a store other users could change is refused before anything is made', async (t) => {
  const open = mkdtempSync('/tmp/conveyor-hostile-');
  t.teardown(() => rmSync(open, { recursive: true, force: true }));
  chmodSync(open, 0o777);
  const context = contextDir(t, { Dockerfile: 'FROM busybox\nRUN true\n' });
  const result = await imgBuild(join(open, 'store'), ['--log-format=json', context]);
  t.equal(result.code, 1);
  t.equal(errorOf(result)?.code, 'ERR_STORE_UNSAFE');
  t.notOk(existsSync(join(open, 'store')), 'no store was created');
});

t.test('forged cache entries are misses: the step runs again and the image is right', async (t) => {
  const context = contextDir(t, { Dockerfile: 'FROM busybox\nRUN echo genuine > /g.txt\n' });
  const first = await imgBuild(root, ['--progress=json', '-t', 'forged:1', context]);
  t.equal(first.code, 0, first.stderr);
  const control = await imgBuild(root, ['--progress=json', '-t', 'forged:1', context]);
  t.strictSame(
    stepEvents(control).map((e) => e.cached),
    [false, true],
    'unforged, the entry hits',
  );
  const runLayer = first.records[0].layers.at(-1).digest;
  const cacheDir = join(root, 'build-cache');
  const entryFile = readdirSync(cacheDir)
    .map((name) => join(cacheDir, name))
    .find((path) => JSON.parse(readFileSync(path, 'utf8')).newLayer === runLayer);
  if (!entryFile) throw new Error("no cache entry names the RUN's layer");
  const genuine = readFileSync(entryFile, 'utf8');
  const rerun = async (what: string) => {
    const result = await imgBuild(root, ['--progress=json', '-t', 'forged:1', context]);
    t.equal(result.code, 0, `${what}: ${result.stderr}`);
    t.strictSame(
      stepEvents(result).map((e) => e.cached),
      [false, false],
      `${what}: the RUN ran again`,
    );
    t.equal(runImage(root, 'forged:1', ['cat', '/g.txt']).stdout, 'genuine\n', `${what}: the image holds what the step makes`);
    return result;
  };

  // A blob whose bytes are not its digest, of the size the entry claims.
  const entry = JSON.parse(genuine);
  const fake = `sha256:${randomBytes(32).toString('hex')}`;
  copyFileSync(join(root, 'blobs', 'sha256', entry.layers[0].digest.slice(7)), join(root, 'blobs', 'sha256', fake.slice(7)));
  const fakeSize = statSync(join(root, 'blobs', 'sha256', fake.slice(7))).size;
  entry.layers[entry.layers.length - 1] = { ...entry.layers.at(-1), digest: fake, size: fakeSize };
  entry.newLayer = fake;
  entry.blobs = [...entry.blobs, fake];
  writeFileSync(entryFile, JSON.stringify(entry));
  const afterFake = await rerun('a blob with other content');
  t.not(afterFake.records[0].layers.at(-1).digest, fake);

  // Paths where digests belong.
  for (const path of ['../../../../etc/passwd', 'sha256:../../../etc/passwd']) {
    const forged = JSON.parse(genuine);
    forged.config.digest = path;
    forged.layers[forged.layers.length - 1].digest = path;
    writeFileSync(entryFile, JSON.stringify(forged));
    await rerun(`a path ${path}`);
  }

  // The entry file replaced by a symlink to a file outside the store.
  const outside = join(mkdtempSync('/tmp/conveyor-hostile-'), 'entry.json');
  t.teardown(() => rmSync(outside, { force: true }));
  writeFileSync(outside, genuine);
  rmSync(entryFile);
  symlinkSync(outside, entryFile);
  await rerun('a symlinked entry');
  t.equal(readFileSync(outside, 'utf8'), genuine, 'the file outside the store is not written through the link');
});
