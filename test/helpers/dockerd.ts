/**
 * A private dockerd for interoperability tests (docker pull/run of what img-push pushed, docker load of what
 * img-export wrote, docker save into img-import): its own socket, data root, exec root and pid file under
 * `work`, no networking set-up on the host (no iptables, no bridge, no userland proxy). Resolves to the socket
 * and a stop function, or to the reason it cannot run (not installed, exited, no answer in 30 s), for a
 * clean skip.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface Dockerd {
  /** The socket: `docker -H unix://<sock>`. */
  sock: string;
  stop(): Promise<void>;
}

export async function startDockerd(work: string, options: { insecureRegistries?: string[] } = {}): Promise<Dockerd | string> {
  const dockerd = ['/usr/sbin/dockerd', '/usr/bin/dockerd'].find((p) => existsSync(p));
  if (!dockerd) return 'dockerd is not installed';
  const sock = join(work, 'docker.sock');
  const args = [
    '-H',
    `unix://${sock}`,
    '--data-root',
    join(work, 'data'),
    '--exec-root',
    join(work, 'exec'),
    '--pidfile',
    join(work, 'docker.pid'),
    '--iptables=false',
    '--ip6tables=false',
    '--ip-forward=false',
    '--ip-masq=false',
    '--bridge=none',
    '--userland-proxy=false',
    '--storage-driver',
    'overlay2',
    '--exec-opt',
    'native.cgroupdriver=cgroupfs',
    ...(options.insecureRegistries ?? []).flatMap((host) => ['--insecure-registry', host]),
  ];
  const child: ChildProcess = spawn(dockerd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  let exited = false;
  child.on('exit', () => (exited = true));
  const stop = async () => {
    if (!exited) {
      const done = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 15_000))]);
      if (!exited) child.kill('SIGKILL');
    }
  };
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (exited) return `dockerd exited at start: ${log.split('\n').slice(-3).join(' ')}`;
    try {
      await execFileAsync('docker', ['-H', `unix://${sock}`, 'version'], { timeout: 5000 });
      return { sock, stop };
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  await stop();
  return 'dockerd did not answer in 30 s';
}
