/**
 * Shared namespaces with real busybox containers: a detached httpd and a
 * second container with --net container:NAME talking to it over 127.0.0.1
 * (a pod), --pid container:NAME seeing its processes, the joined container's
 * name files; refusals (a container that is not running, a forged id,
 * `--net container:../../x`); a SIGKILLed supervisor's pasta and namespace
 * removed by ctr-rm.
 */
import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Store } from '@conveyor/lib-common/store';
import { removeContainerFully } from '@conveyor/lib-common/container/remove';
import { NETNS_FILE, readNetworkHelper } from '@conveyor/lib-common/container/network';
import { processRuns } from '@conveyor/lib-common/container/state';
import { processAlive } from '@conveyor/lib-common/lock';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { leftoversOf, startDetached, stateOf, waitForState } from '../../../test/helpers/containers.js';
import { runTool } from '../../../test/helpers/tools.js';
import { containerDirs, ctrSpawn } from './helpers.js';

const root = tempStore('conveyor-network-shared-');
const rootfs = busyboxRootfs(root, 'latest');
t.teardown(async () => {
  const store = new Store(root);
  for (const id of containerDirs(root)) await removeContainerFully(store, { id, dir: store.containerDir(id) }).catch(() => undefined);
  removeStore(root);
});

const run = (args: string[], script: string) => ctrSpawn(rootfs, ['--root', root, ...args, '--', 'sh', '-c', script]);
const cmdline = (pid: string) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return ''; // gone
  }
};
const mounted = (path: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === path);

t.test('--net container:NAME: a pod over localhost; --pid container:NAME sees its processes', async (t) => {
  const web = await startDetached(
    root,
    rootfs,
    ['--name', 'web', '--hostname', 'webhost', '--add-host', 'db:10.7.7.7'],
    ['sh', '-c', 'mkdir -p /www && echo pod-hello > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www'],
  );
  t.ok(mounted(join(root, 'containers', web.id, NETNS_FILE)), 'its namespace is mounted on its netns file');
  const sidecar = await run(
    ['--net', 'container:web', '--pid', 'container:web', '--keep', '--name', 'sidecar'],
    // web's httpd may not listen yet when its start returns: ask until it answers (10 s at most).
    "i=0; until printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc 127.0.0.1 8080 > /tmp/reply 2>/dev/null && grep -q pod-hello /tmp/reply || [ $i -ge 100 ]; do i=$((i+1)); sleep 0.1; done; cat /tmp/reply; ps -o comm | grep -c httpd; cat /etc/hostname; grep db /etc/hosts",
  );
  t.equal(sidecar.code, 0, sidecar.stderr);
  t.match(sidecar.stdout, /pod-hello/, "reached web's 127.0.0.1:8080");
  t.match(sidecar.stdout, /^1$/m, "web's httpd in its process list");
  t.match(sidecar.stdout, /^webhost$/m, "web's hostname");
  t.match(sidecar.stdout, /^10\.7\.7\.7\tdb$/m, "web's /etc/hosts");
  const sidecarId = containerDirs(root).find((id) => stateOf(root, id)?.name === 'sidecar')!;
  t.equal(stateOf(root, sidecarId)?.network, `container:${web.id}`, 'its network field names the joined container');
  t.notOk(existsSync(join(root, 'containers', sidecarId, NETNS_FILE)), 'no namespace of its own');
  t.ok(mounted(join(root, 'containers', web.id, NETNS_FILE)), "the sidecar's end leaves web's namespace alone");
  const print = await ctrSpawn(rootfs, ['--root', root, '--print-spec', '--net', 'container:web']);
  const network = JSON.parse(print.stdout).linux.namespaces.find((n: { type: string }) => n.type === 'network');
  t.equal(network.path, join(root, 'containers', web.id, NETNS_FILE), "the spec joins web's namespace file");
  await runTool('ctr-rm', ['--root', root, sidecarId]);

  const rm = await runTool('ctr-rm', ['--root', root, '-f', 'web']);
  t.equal(rm.code, 0, rm.stderr);
  t.strictSame(leftoversOf(root, web.id), [], 'nothing of web is left, its namespace mount included');
});

t.test('--net container: refused for what does not run or does not exist', async (t) => {
  const stopped = await startDetached(root, rootfs, ['--name', 'stopped'], ['true']);
  await waitForState(root, stopped.id, (s) => s?.status === 'exited');
  const cases: [string, RegExp][] = [
    ['container:stopped', /not running/],
    [`container:${'e'.repeat(64)}`, /no such container/],
    ['container:../../x', /no such container/],
    ['container:/proc/1/ns/net', /no such container/],
  ];
  for (const [net, message] of cases) {
    const r = await run(['--net', net], 'true');
    t.equal(r.code, 125, net);
    t.match(r.stderr, message, net);
  }
  t.strictSame(
    containerDirs(root).filter((id) => id !== stopped.id),
    [],
    'the refused runs left no container',
  );
  await runTool('ctr-rm', ['--root', root, stopped.id]);
});

t.test("a SIGKILLed supervisor's pasta and namespace are removed by ctr-rm", { skip: !existsSync('/usr/bin/pasta') && 'pasta is not installed' }, async (t) => {
  const record = await startDetached(root, rootfs, [], ['sleep', '60']);
  const dir = join(root, 'containers', record.id);
  const helper = (await readNetworkHelper(dir))!;
  t.equal(helper?.name, 'pasta', 'network.json records its pasta');
  const supervisor = stateOf(root, record.id)!.supervisor;
  process.kill(supervisor.pid, 'SIGKILL');
  await waitForState(root, record.id, () => !processAlive(supervisor.pid, supervisor.startTime));
  t.ok(processAlive(helper.pid, helper.startTime), 'pasta outlives the supervisor');
  const rm = await runTool('ctr-rm', ['--root', root, '-f', record.id]);
  t.equal(rm.code, 0, rm.stderr);
  t.notOk(processRuns(helper.pid, helper.startTime), 'ctr-rm stopped it (a zombie until init reaps it counts as gone)');
  t.strictSame(leftoversOf(root, record.id), []);
  t.notOk(
    readdirSync('/proc').some((p) => /^\d+$/.test(p) && cmdline(p).includes(dir)),
    'no process names the container directory',
  );
});

t.test(
  '--restart keeps the network: the restarted container has eth0 again',
  { skip: !existsSync('/usr/bin/pasta') && 'pasta is not installed' },
  async (t) => {
    const record = await startDetached(root, rootfs, ['--restart', 'on-failure:1'], ['sh', '-c', 'ip -4 -o addr show eth0 | grep -c inet; exit 3']);
    const dir = join(root, 'containers', record.id);
    // Both runs and the final clean-up (network.json gone) may be over by now, under load: the
    // helper is looked for by what names the container directory, not by network.json.
    const pastaOf = () => readdirSync('/proc').filter((p) => /^\d+$/.test(p) && /^(\S*\/)?pasta\0/.test(cmdline(p)) && cmdline(p).includes(dir));
    const ended = await waitForState(root, record.id, (s) => s?.status === 'exited' && s.restartCount === 1, 20_000);
    t.equal(ended?.restartCount, 1, 'restarted once');
    const log = readFileSync(join(dir, 'ctr.log'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l).log);
    t.strictSame(log, ['1\n', '1\n'], 'both runs had an address on eth0');
    // The supervisor's final clean-up tore it down once the policy gave up.
    await waitForState(root, record.id, () => pastaOf().length === 0 && !mounted(join(dir, NETNS_FILE)));
    t.strictSame(pastaOf(), [], 'its pasta went with the last run');
    t.notOk(mounted(join(dir, NETNS_FILE)), 'its namespace too');
    await runTool('ctr-rm', ['--root', root, record.id]);
  },
);
