/**
 * conveyor-run (scripts/run.mjs) reads ctr-spawn's flags from ctr-spawn's own
 * list (tools/ctr-spawn/src/flags.ts), so none of them can take the image as
 * its value. The image is put in the store first: with --pull=missing (the
 * default) no registry is asked.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { busyboxLayout, importToStore, REPO_ROOT } from './helpers/fixtures.js';
import { removeStore, tempStore } from './helpers/rootfs.js';

const run = promisify(execFile);
const RUN_SCRIPT = join(REPO_ROOT, 'scripts', 'run.mjs');

t.test('--print-spec before the image is a switch: the image stays the image, the rest is the command', async (t) => {
  const root = tempStore('conveyor-run-');
  t.teardown(() => removeStore(root));
  importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/alpine:latest');
  const result = await run(process.execPath, [RUN_SCRIPT, '--root', root, '--print-spec', 'alpine', 'echo', 'hi']).catch((error) => error);
  t.equal(result.code ?? 0, 0, `conveyor-run exits 0 ${result.stderr}`);
  const spec = JSON.parse(result.stdout);
  t.strictSame(spec.process.args, ['echo', 'hi'], 'the words after the image are the command');
  t.equal(spec.annotations['org.opencontainers.image.ref.name'], 'docker.io/library/alpine:latest', 'alpine is the image');
});

t.test('-d, --name and --rm pass through to ctr-spawn: a container record comes out and the container runs detached', async (t) => {
  const root = tempStore('conveyor-run-');
  t.teardown(() => removeStore(root));
  importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/busybox:latest');
  const result = await run(process.execPath, [RUN_SCRIPT, '--root', root, '-d', '--rm', '--name', 'bg', 'busybox', 'sh', '-c', 'echo from-bg; sleep 2']).catch(
    (error) => error,
  );
  t.equal(result.code ?? 0, 0, `conveyor-run exits 0 ${result.stderr}`);
  const record = JSON.parse(result.stdout);
  t.match(record, { type: 'container', name: 'bg', status: 'running', image: 'docker.io/library/busybox:latest' });
  const logs = await run(process.execPath, [join(REPO_ROOT, 'tools', 'ctr-logs', 'bin', 'ctr-logs.js'), '--root', root, '-f', record.id]);
  t.equal(logs.stdout, 'from-bg\n', 'its output is in its log');
  // --rm: the supervisor removes it once it has ended.
  for (let i = 0; i < 100 && existsSync(record.bundle); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  t.notOk(existsSync(record.bundle), 'removed when it ended');
});
