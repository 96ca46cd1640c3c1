/**
 * img-prune beside a foreground container whose overlay the runtime mounted
 * (issue 17: runc mounts it inside the container's mount namespace, so the
 * host's mount table does not show it). With the container's state.json
 * unreadable (so nothing keeps its image by state), the layers its bundle's
 * config.json hands the runtime still stay, and the container runs on (its
 * image's reference and blobs, which only the state kept, go with -a). gc.ts's reading of config.json
 * (forged ones included) is tested in lib-common/test/gc.test.ts.
 */
import t from 'tap';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';

const root = tempStore('conveyor-prune-rtmount-');
t.teardown(() => removeStore(root));
const rootfs = busyboxRootfs(root, 'latest');
const share = mkdtempSync('/tmp/conveyor-prune-rtmount-share-');
t.teardown(() => rmSync(share, { recursive: true, force: true }));

t.test('a running foreground container whose state.json is unreadable keeps its layers through img-prune -a', async (t) => {
  const layers = readdirSync(join(root, 'layers')).sort();
  t.equal(layers.length, 1, 'busybox has one chain');
  chmodSync(share, 0o777);
  // The container says `ready`, waits for /sync/go (a bind of a host dir), then runs on.
  const wait = 'i=0; while [ ! -e /sync/go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done';
  let checks: Promise<void> | undefined;
  const run = runTool('ctr-spawn', ['--root', root, '--net', 'none', '-v', `${share}:/sync`, '--', 'sh', '-c', `echo ready; ${wait}; ls /etc/group`], {
    input: `${JSON.stringify(rootfs)}\n`,
    onStdout: (stdout) => {
      if (checks || !/(^|\n)ready\n/.test(stdout)) return;
      checks = (async () => {
        try {
          const [id] = readdirSync(join(root, 'containers'));
          const dir = join(root, 'containers', id);
          const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
          t.equal(config.mounts[0]?.destination, '/', 'the runtime mounts the root (nothing on the host)');
          const state = readFileSync(join(dir, 'state.json'));
          writeFileSync(join(dir, 'state.json'), '{"status": "running", truncated');
          try {
            const prune = await runTool('img-prune', ['--root', root, '--log-format=json', '-a']);
            t.equal(prune.code, 0, prune.stderr);
            t.ok(
              prune.logs.some((l) => l.level === 'warn'),
              'the unreadable state is warned about',
            );
            t.strictSame(
              prune.records.filter((r) => r.type === 'freed' && r.kind === 'layer'),
              [],
              'no layer is freed',
            );
            t.strictSame(readdirSync(join(root, 'layers')).sort(), layers, 'the layer dirs stay');
            t.ok(existsSync(join(root, 'layers', layers[0], 'diff', 'bin', 'busybox')), 'with their files');
          } finally {
            writeFileSync(join(dir, 'state.json'), state);
          }
        } finally {
          writeFileSync(join(share, 'go'), '');
        }
      })();
    },
  });
  const result = await run;
  await checks;
  t.ok(checks, 'the container came up');
  t.equal(result.code, 0, result.stderr);
  t.equal(result.stdout, 'ready\n/etc/group\n', 'the container ran on after the prune');
});
