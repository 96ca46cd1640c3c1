/**
 * conveyor-run (scripts/run.mjs) reads ctr-spawn's flags from ctr-spawn's own
 * list (tools/ctr-spawn/src/flags.ts), so none of them can take the image as
 * its value. The image is put in the store first: with --pull=missing (the
 * default) no registry is asked.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
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
