/**
 * Multi-stage builds: only the stages the target needs are built (a stage
 * that would fail is skipped when unused), COPY --from by stage name, by
 * index and from an image, FROM an earlier stage, --target, a FROM scratch
 * final stage, and global ARGs as defaults for a stage's re-declaration.
 */
import t from 'tap';
import { containerDirs, imgBuild, runImage, storeWithBusybox, contextDir } from './helpers/build.js';

const store = storeWithBusybox();
t.teardown(() => store.cleanup());
const root = store.root;

const DOCKERFILE = `ARG VERSION=3
ARG BASE=busybox
FROM \${BASE} AS builder
ARG VERSION
RUN mkdir /out && echo "built v$VERSION" > /out/artifact

FROM busybox AS unused
RUN echo this stage must not be built; exit 1

FROM builder AS tested
RUN cat /out/artifact > /out/tested

FROM scratch AS final
COPY --from=builder /bin/busybox /bin/busybox
COPY --from=builder /out/artifact /artifact
COPY --from=2 /out/tested /tested
COPY --from=busybox:v2 /hello.txt /hello.txt
ENTRYPOINT ["/bin/busybox"]
CMD ["cat", "/artifact", "/tested", "/hello.txt"]
`;

t.test('the last stage, built from the stages it needs', async (t) => {
  const context = contextDir(t, { Dockerfile: DOCKERFILE });
  const result = await imgBuild(root, ['--progress=json', '-t', 'multi:final', context]);
  t.equal(result.code, 0, result.stderr);
  t.notMatch(result.stderr, /must not be built/, 'the unused stage is not built');
  const starts = result.logs.filter((l) => l.action === 'step' && l.phase === 'start');
  t.equal(starts.length, 3 + 2 + 7, 'steps of builder, tested and final only');
  t.strictSame([...new Set(starts.map((s) => s.stage))], ['builder', 'tested', 'final']);
  const image = result.records[0];
  t.equal(image.layers.length, 4, 'scratch + four COPYs');
  t.strictSame(image.config.Entrypoint, ['/bin/busybox']);
  const run = runImage(root, 'multi:final', []);
  t.equal(run.code, 0, run.stderr);
  t.equal(run.stdout, 'built v3\nbuilt v3\nhello from v2\n');
  t.strictSame(containerDirs(root), []);
});

t.test('--target stops at a stage; build args reach a re-declared global ARG', async (t) => {
  const context = contextDir(t, { Dockerfile: DOCKERFILE });
  const result = await imgBuild(root, ['--target', 'builder', '--build-arg', 'VERSION=7', '-t', 'multi:builder', context]);
  t.equal(result.code, 0, result.stderr);
  t.notMatch(result.stderr, /Step \d+\/\d+ : (FROM scratch|RUN cat)/, 'later stages are not built');
  const run = runImage(root, 'multi:builder', ['cat', '/out/artifact']);
  t.equal(run.stdout, 'built v7\n');
  t.equal(result.records[0].layers.length, 2, "busybox's layer and the RUN");
});

t.test('a --from that names no stage nor pullable image fails', async (t) => {
  // A loopback port nothing listens on: the pull fails without leaving the machine.
  const context = contextDir(t, { Dockerfile: 'FROM busybox\nCOPY --from=127.0.0.1:1/nowhere /x /x\n' });
  const result = await imgBuild(root, ['--log-format=json', context]);
  t.equal(result.code, 1);
  const error = result.logs.find((l) => l.level === 'error' && l.tool === 'img-build');
  t.match(error, { code: 'ERR_REGISTRY_UNAVAILABLE', message: /^COPY --from=127\.0\.0\.1:1\/nowhere: img-fetch failed/ });
});

t.test('COPY --from a stage defined later (or the stage itself) is refused', async (t) => {
  for (const from of ['later', '1', 'self']) {
    const context = contextDir(t, { Dockerfile: `FROM busybox AS self\nCOPY --from=${from} /bin/sh /sh2\nFROM busybox AS later\n` });
    const result = await imgBuild(root, ['--log-format=json', '--target', 'self', context]);
    t.equal(result.code, 2, from);
    t.match(
      result.logs.find((l) => l.level === 'error'),
      { code: 'ERR_DOCKERFILE_PARSE', message: /^Dockerfile:2: COPY --from=/ },
      from,
    );
  }
});
