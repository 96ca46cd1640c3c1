/**
 * img-build end to end on the busybox fixture: a multi-step build whose RUN
 * creates, deletes and overwrites files of the base, COPYs from the context,
 * sets ENV/WORKDIR/USER/CMD/EXPOSE/LABEL; the image runs through
 * img-ls | layer-unpack | ctr-spawn and shows what the steps did. Then
 * reproducibility (SOURCE_DATE_EPOCH, --no-cache twice: same digest), a
 * failing RUN, a parse error, and SIGTERM in the middle of a RUN.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { toolPath } from '../../../test/helpers/tools.js';
import { containerDirs, imgBuild, mountsUnder, runImage, storeWithBusybox, contextDir } from './helpers/build.js';

if (process.getuid?.() !== 0) {
  t.fail('img-build needs root (overlay mounts, runc): run the tests as root');
  process.exit(1);
}

const store = storeWithBusybox();
t.teardown(() => store.cleanup());
const root = store.root;

const DOCKERFILE = `# a multi-step build
FROM busybox:v2
ARG GREETING=hello
ENV APP_HOME=/srv/app \\
    PATH=/srv/app/bin:$PATH
RUN mkdir -p /srv/app/bin && echo "$GREETING from run" > /srv/app/run.txt \\
 && rm /hello.txt && echo "extra:x:4242:" >> /etc/group
COPY greet.sh /srv/app/bin/greet
COPY data/ /srv/app/data/
WORKDIR $APP_HOME
USER app
EXPOSE 8080 53/udp
LABEL org.example.name=demo
CMD ["greet"]
`;

function blobJson(digest: string): any {
  return JSON.parse(readFileSync(join(root, 'blobs', 'sha256', digest.slice(7)), 'utf8'));
}

t.test('a multi-step build: config, history, layers, and the image runs', async (t) => {
  const context = contextDir(t, {
    Dockerfile: DOCKERFILE,
    'greet.sh': '#!/bin/sh\necho "greet: $(cat /srv/app/run.txt) as $(id -un) in $(pwd)"\n',
    data: { 'a.txt': 'data a\n' },
  });
  const { chmodSync } = await import('node:fs');
  chmodSync(join(context, 'greet.sh'), 0o755);
  const result = await imgBuild(root, ['-t', 'app:1', context]);
  t.equal(result.code, 0, result.stderr);
  t.match(result.stderr, /Step 1\/11 : FROM busybox:v2\n/);
  t.match(result.stderr, /Step 4\/11 : RUN mkdir/);
  t.equal(result.records.length, 1);
  const image = result.records[0];
  t.equal(image.type, 'image');
  t.equal(image.ref, 'docker.io/library/app:1');
  t.strictSame(image.config.Env, ['PATH=/srv/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'APP_HOME=/srv/app']);
  t.equal(image.config.WorkingDir, '/srv/app');
  t.equal(image.config.User, 'app');
  t.strictSame(image.config.Cmd, ['greet']);
  t.strictSame(image.config.ExposedPorts, { '8080/tcp': {}, '53/udp': {} });
  t.strictSame(image.config.Labels, { 'org.example.name': 'demo' });
  // busybox:v2's two layers, RUN, two COPYs; WORKDIR of a directory RUN made adds none.
  t.equal(image.layers.length, 5);

  const config = blobJson(image.configDescriptor.digest);
  const history = config.history.slice(-10);
  t.match(history[0], { created_by: '/bin/sh -c #(nop)  ARG GREETING=hello', empty_layer: true });
  t.match(history[1], {
    created_by: '/bin/sh -c #(nop)  ENV APP_HOME=/srv/app PATH=/srv/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    empty_layer: true,
  });
  t.match(history[2].created_by, /^\|1 GREETING=hello \/bin\/sh -c mkdir -p \/srv\/app\/bin/);
  t.notOk(history[2].empty_layer);
  t.match(history[3].created_by, /^\/bin\/sh -c #\(nop\) COPY sha256:[0-9a-f]{64} in \/srv\/app\/bin\/greet $/);
  t.match(history[5], { created_by: '/bin/sh -c #(nop)  WORKDIR /srv/app', empty_layer: true });
  t.match(history[9], { created_by: '/bin/sh -c #(nop)  CMD ["greet"]', empty_layer: true });
  t.equal(config.history.filter((h: any) => !h.empty_layer).length, config.rootfs.diff_ids.length, 'one non-empty history entry per layer');

  const run = runImage(root, 'app:1', []);
  t.equal(run.code, 0, run.stderr);
  t.equal(run.stdout, 'greet: hello from run as app in /srv/app\n');
  const files = runImage(root, 'app:1', [
    'sh',
    '-c',
    'cat /srv/app/data/a.txt; grep extra /etc/group; grep -c root /etc/group; test -e /hello.txt || echo gone',
  ]);
  t.equal(files.stdout, 'data a\nextra:x:4242:\n1\ngone\n', files.stderr);

  t.strictSame(containerDirs(root), [], 'no container dir is left');
  t.strictSame(mountsUnder(root), [], 'nothing is left mounted');
});

t.test('SOURCE_DATE_EPOCH and --no-cache twice: the same layers and the same manifest digest', async (t) => {
  const context = contextDir(t, {
    Dockerfile: 'FROM busybox\nRUN echo one > /one && mkdir /d && touch /d/x\nCOPY f /f\nCMD ["cat", "/one"]\n',
    f: 'file\n',
  });
  const env = { SOURCE_DATE_EPOCH: '1700000000' };
  // Cached without SOURCE_DATE_EPOCH first: a build with it must not reuse those steps.
  const unclamped = await imgBuild(root, ['-t', 'repro:0', context]);
  t.equal(unclamped.code, 0, unclamped.stderr);
  const clamped = await imgBuild(root, ['-t', 'repro:0', context], env);
  t.notMatch(clamped.stderr, /Using cache/, 'steps cached without SOURCE_DATE_EPOCH are not reused with it');
  t.equal(clamped.records[0].created, '2023-11-14T22:13:20.000Z');
  const first = await imgBuild(root, ['--no-cache', '-t', 'repro:1', context], env);
  t.equal(first.code, 0, first.stderr);
  const second = await imgBuild(root, ['--no-cache', '-t', 'repro:2', context], env);
  t.equal(second.code, 0, second.stderr);
  t.notMatch(second.stderr, /Using cache/, '--no-cache ran every step');
  t.strictSame(
    second.records[0].layers.map((l: any) => l.diffID),
    first.records[0].layers.map((l: any) => l.diffID),
  );
  t.equal(second.records[0].digest, first.records[0].digest);
  t.equal(first.records[0].created, '2023-11-14T22:13:20.000Z');
  const config = blobJson(first.records[0].configDescriptor.digest);
  t.equal(config.history.at(-1).created, '2023-11-14T22:13:20.000Z');
});

t.test('a failing RUN: ERR_BUILD_STEP naming the line and code, nothing tagged, nothing left', async (t) => {
  const context = contextDir(t, { Dockerfile: 'FROM busybox\nRUN echo before\nRUN echo failing >&2; exit 3\nRUN echo never\n' });
  const result = await imgBuild(root, ['--log-format=json', '-t', 'fails:1', context]);
  t.equal(result.code, 1);
  const error = result.logs.find((l) => l.level === 'error');
  t.equal(error?.code, 'ERR_BUILD_STEP');
  t.match(error?.message, /^Dockerfile:3: RUN echo failing >&2; exit 3: exited with code 3$/);
  t.match(result.stderr, /failing\n/, "the step's output is on stderr");
  t.notMatch(result.stderr, /never/);
  t.equal(result.records.length, 0);
  t.notOk(readFileSync(join(root, 'index.json'), 'utf8').includes('fails:1'), 'not tagged');
  t.strictSame(containerDirs(root), []);
  t.strictSame(mountsUnder(root), []);
});

t.test('a parse error names the line and runs nothing', async (t) => {
  const context = contextDir(t, { Dockerfile: 'FROM busybox\nRUN echo x\nBOGUS thing\n' });
  const result = await imgBuild(root, ['--log-format=json', context]);
  t.equal(result.code, 2);
  const error = result.logs.find((l) => l.level === 'error');
  t.equal(error?.code, 'ERR_DOCKERFILE_PARSE');
  t.match(error?.message, /Dockerfile:3:/);
  t.notMatch(result.stderr, /Step 1/, 'no step started');
  for (const bad of ['COPY --bogus=1 a /a', 'COPY --chmod=abc a /a', 'RUN --mount=type=cache,target=/x true', 'EXPOSE']) {
    const later = contextDir(t, { Dockerfile: `FROM busybox\nRUN echo first > /first\n${bad}\n` });
    const checked = await imgBuild(root, ['--log-format=json', later]);
    t.equal(checked.code, 2, `${bad}: exit 2`);
    t.match(
      checked.logs.find((l) => l.level === 'error'),
      { code: 'ERR_DOCKERFILE_PARSE', message: /^Dockerfile:3: / },
      bad,
    );
    t.notMatch(checked.stderr, /Step 1/, `${bad}: refused before the first step`);
  }
});

t.test('usage errors', async (t) => {
  const context = contextDir(t, { Dockerfile: 'FROM busybox\n' });
  for (const args of [
    ['--bogus', context],
    [],
    [context, context],
    ['--platform', 'linux/s390x', context],
    ['--network', 'bridge', context],
    ['--target', 'nope', context],
  ]) {
    const result = await imgBuild(root, args);
    t.equal(result.code, 2, `${args.join(' ')}: exit 2 (${result.stderr.trim()})`);
  }
});

t.test('SIGTERM during a RUN: the container stops, no mount, no container dir, no runtime state, no cache entry', async (t) => {
  const context = contextDir(t, { Dockerfile: 'FROM busybox\nRUN echo started; sleep 60\n' });
  const cacheDir = join(root, 'build-cache');
  const before = existsSync(cacheDir) ? readdirSync(cacheDir).length : 0;
  const child = spawn(process.execPath, [toolPath('img-build'), '--root', root, '--no-cache', context], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let id = '';
  const code = await new Promise<number | null>((resolve) => {
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      const running = /Running in ([0-9a-f]{12})/.exec(stderr);
      if (running) id = running[1];
      if (id && stderr.includes('started\n') && !child.killed) child.kill('SIGTERM');
    });
    child.on('close', (c) => resolve(c));
  });
  t.equal(code, 143, stderr);
  t.ok(id, 'the RUN started');
  t.strictSame(containerDirs(root), []);
  t.strictSame(mountsUnder(root), []);
  const runtimeState = existsSync('/run/conveyor-runc') ? readdirSync('/run/conveyor-runc').filter((d) => d.startsWith(id)) : [];
  t.strictSame(runtimeState, [], 'no runc state left');
  t.equal(existsSync(cacheDir) ? readdirSync(cacheDir).length : 0, before, 'no cache entry written for the cancelled step');
});
