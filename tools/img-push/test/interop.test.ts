/**
 * Proof of interoperability: an image img-push put in a real registry is
 * pulled and run by independent tools. skopeo copies it into an OCI layout
 * (the digest it reads is ours), umoci unpacks it and runc runs it; dockerd
 * (started here on a private socket, data root and exec root, trusting the
 * test registry as insecure) pulls it and `docker run` runs it. The dockerd
 * part skips with its reason when dockerd is not installed or does not come
 * up in 30 s.
 */
import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { busyboxLayout, importToStore } from '../../../test/helpers/fixtures.js';
import { startRegistry } from '../../../test/helpers/registry.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';
import { startDockerd } from '../../../test/helpers/dockerd.js';

const execFileAsync = promisify(execFile);

const reg = await startRegistry();
t.teardown(() => reg.stop());
const root = tempStore('conveyor-push-interop-');
t.teardown(() => removeStore(root));
importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/app:dev');
const local = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')).manifests[0];
const target = `${reg.host}/interop/app:1`;
const pushed = await runTool('img-push', ['--root', root, '--log-format=json', '--to', target, 'app:dev'], {
  env: { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config' },
});

t.test('img-push succeeded', async (t) => {
  t.equal(pushed.code, 0, pushed.stderr);
  t.equal(pushed.records[0]?.digest, local.digest);
});

t.test('skopeo copy + umoci raw unpack + runc run', async (t) => {
  const work = mkdtempSync('/tmp/conveyor-push-runc-');
  const runcRoot = join(work, 'runc');
  const id = `conveyor-push-${process.pid}`;
  t.teardown(() => {
    try {
      execFileSync('runc', ['--root', runcRoot, 'delete', '--force', id], { stdio: 'ignore' });
    } catch {
      // Never created, or already gone.
    }
    rmSync(work, { recursive: true, force: true });
  });
  const layout = join(work, 'layout');
  await execFileAsync('skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://${target}`, `oci:${layout}:1`]);
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  t.equal(index.manifests[0].digest, local.digest, 'skopeo read the manifest we pushed, byte for byte');

  const bundle = join(work, 'bundle');
  mkdirSync(bundle);
  await execFileAsync('umoci', ['raw', 'unpack', '--image', `${layout}:1`, join(bundle, 'rootfs')]);
  t.ok(existsSync(join(bundle, 'rootfs', 'bin', 'busybox')), 'umoci unpacked the layers');
  execFileSync('runc', ['spec', '--bundle', bundle]);
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  spec.process.terminal = false;
  spec.process.args = ['/bin/busybox', 'echo', 'pushed by conveyor'];
  spec.root = { path: 'rootfs', readonly: true };
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
  const { stdout } = await execFileAsync('runc', ['--root', runcRoot, 'run', '--bundle', bundle, id]);
  t.equal(stdout, 'pushed by conveyor\n');
});

t.test('docker pull + docker run (dockerd on a private socket)', async (t) => {
  const work = mkdtempSync('/tmp/conveyor-push-docker-');
  const started = await startDockerd(work, { insecureRegistries: [reg.host] });
  if (typeof started === 'string') {
    rmSync(work, { recursive: true, force: true });
    t.skip(started);
    return;
  }
  t.teardown(async () => {
    await started.stop();
    rmSync(work, { recursive: true, force: true });
  });
  const docker = (...args: string[]) => execFileAsync('docker', ['-H', `unix://${started.sock}`, ...args], { timeout: 60_000 });
  await docker('pull', '-q', target);
  const { stdout: digests } = await docker('image', 'inspect', '--format', '{{json .RepoDigests}}', target);
  t.match(JSON.parse(digests), [`${reg.host}/interop/app@${local.digest}`], 'docker pulled our manifest digest');
  const { stdout } = await docker('run', '--rm', '--network', 'none', target, '/bin/busybox', 'echo', 'run by docker');
  t.equal(stdout, 'run by docker\n');
  await docker('rmi', '-f', target);
});
