/**
 * img-build's instructions and flags beyond the basic build: RUN heredocs
 * (the script alone, a `#!` script, heredocs the shell reads), exec form,
 * SHELL, RUN as USER, COPY heredocs; the config Docker writes for ENTRYPOINT
 * (clears the base's Cmd), HEALTHCHECK, STOPSIGNAL, VOLUME, SHELL; and the
 * flags -q, --iidfile, --label, -f -, no -t (an unnamed image), and
 * --progress=json's output events.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { imgBuild, runImage, storeWithBusybox, contextDir } from './helpers/build.js';
import { runTool } from '../../../test/helpers/tools.js';

const store = storeWithBusybox();
t.teardown(() => store.cleanup());
const root = store.root;

t.test('RUN heredocs, exec form, SHELL, USER; COPY heredoc', async (t) => {
  const context = contextDir(t, {
    Dockerfile: `FROM busybox
RUN <<EOF
echo "script $((1 + 1))" > /h1
EOF
RUN <<'EOF'
#!/bin/sh
echo "shebang $0" > /h2
EOF
RUN cat <<EOF > /h3 && cat <<EOT > /h4
inline one
EOF
inline two
EOT
RUN ["/bin/sh", "-c", "echo exec form > /h5"]
SHELL ["/bin/sh", "-ec"]
RUN echo "shell $-" | grep -q e && echo "errexit on" > /h6
USER app
RUN id -un > /tmp/who
ARG WHAT=copied
COPY <<EOF /h7
heredoc $WHAT
EOF
`,
  });
  const result = await imgBuild(root, ['-t', 'features:run', context]);
  t.equal(result.code, 0, result.stderr);
  const run = runImage(root, 'features:run', ['sh', '-c', 'cat /h1 /h2 /h3 /h4 /h5 /h6 /tmp/who /h7']);
  t.equal(run.stdout, 'script 2\nshebang /dev/pipes/EOF\ninline one\ninline two\nexec form\nerrexit on\napp\nheredoc copied\n', run.stderr);
  t.strictSame(result.records[0].config.User, 'app');
  const pipes = runImage(root, 'features:run', ['sh', '-c', 'ls -A /dev/pipes 2>&1 || true']);
  t.notMatch(pipes.stdout, /EOF/, 'the heredoc script is not left in the image');
});

t.test('config as Docker writes it', async (t) => {
  const context = contextDir(t, {
    Dockerfile: `FROM busybox
ENTRYPOINT ["/bin/echo"]
HEALTHCHECK --interval=5s --retries=2 CMD wget -q -O- localhost || exit 1
STOPSIGNAL SIGQUIT
VOLUME /data /logs
SHELL ["/bin/ash", "-c"]
ONBUILD RUN echo later
MAINTAINER someone
`,
  });
  const result = await imgBuild(root, ['--label', 'a=1', '--label', 'b=two words', '-t', 'features:config', context]);
  t.equal(result.code, 0, result.stderr);
  const image = result.records[0];
  t.strictSame(image.config.Entrypoint, ['/bin/echo']);
  t.notOk('Cmd' in image.config, "ENTRYPOINT clears the base's Cmd");
  t.equal(image.config.StopSignal, 'SIGQUIT');
  t.strictSame(image.config.Volumes, { '/data': {}, '/logs': {} });
  t.strictSame(image.config.Labels, { a: '1', b: 'two words' });
  const config = JSON.parse(readFileSync(join(root, 'blobs', 'sha256', image.configDescriptor.digest.slice(7)), 'utf8'));
  t.strictSame(config.config.Healthcheck, { Test: ['CMD-SHELL', 'wget -q -O- localhost || exit 1'], Interval: 5_000_000_000, Retries: 2 });
  t.strictSame(config.config.Shell, ['/bin/ash', '-c']);
  t.strictSame(config.config.OnBuild, ['RUN echo later']);
  t.equal(config.author, 'someone');
  const ours = config.history.filter((h: any) => h.created_by?.startsWith('/bin/sh -c #(nop)  '));
  t.equal(ours.length, 7, 'one history entry per instruction');
  t.ok(
    ours.every((h: any) => h.empty_layer === true),
    'metadata steps make no layer',
  );
  t.equal(image.layers.length, 1);
  const run = runImage(root, 'features:config', ['hello']);
  t.equal(run.stdout, 'hello\n');
});

t.test('-q, --iidfile, -f -, no -t, --progress=json output events', async (t) => {
  const context = contextDir(t, { 'other.Dockerfile': 'FROM busybox\nRUN echo out; echo err >&2\n' });
  const iid = join(context, 'iid');
  const quiet = await imgBuild(root, ['-q', '--iidfile', iid, '-f', join(context, 'other.Dockerfile'), context]);
  t.equal(quiet.code, 0, quiet.stderr);
  t.match(quiet.stdout, /^sha256:[0-9a-f]{64}\n$/, '-q prints the digest only');
  t.equal(quiet.stderr, '', '-q: nothing on stderr');
  t.equal(readFileSync(iid, 'utf8'), quiet.stdout.trim());
  const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8'));
  t.ok(
    index.manifests.some((m: any) => m.digest === quiet.stdout.trim() && !m.annotations),
    'without -t, an unnamed index.json entry keeps the image',
  );
  const listed = await runTool('img-ls', ['--root', root, '--json']);
  t.ok(
    listed.records.some((r) => r.digest === quiet.stdout.trim()),
    'img-ls lists it',
  );

  const json = await runTool('img-build', ['--root', root, '--no-cache', '--progress=json', '-f', '-', '-t', 'features:stdin', context], {
    input: 'FROM busybox\nRUN echo out; echo err >&2\n',
  });
  t.equal(json.code, 0, json.stderr);
  const output = json.logs.filter((l) => l.action === 'output');
  t.strictSame(
    output.map((o) => [o.stream, o.data]).sort(),
    [
      ['stderr', 'err\n'],
      ['stdout', 'out\n'],
    ].sort(),
  );
  t.ok(
    output.every((o) => o.id === 'step-2' && o.phase === 'update'),
    'output events belong to the RUN step',
  );
  t.match(json.logs.at(-1), { action: 'build', phase: 'done', tags: ['docker.io/library/features:stdin'] });
  t.equal(json.records[0].ref, 'docker.io/library/features:stdin');
});
