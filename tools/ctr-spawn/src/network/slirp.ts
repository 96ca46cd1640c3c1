/**
 * Userspace networking for a container's namespace, as podman's rootless
 * networking: pasta (Debian's passt) preferred, slirp4netns otherwise. Each
 * is attached to the namespace file, configures its interface (eth0:
 * address, default route, MTU 65520) before it reports being up, runs on
 * after ctr-spawn (its own session) and is recorded in the container
 * directory (network.json: name, pid, start time) for whoever tears it down.
 *
 * What the container can reach: the network the host reaches, through the
 * helper's sockets. The host's loopback only with host-gateway (pasta without
 * --no-map-gw: the gateway address is the host's 127.0.0.1; slirp4netns
 * without --disable-host-loopback: 10.0.2.2 is). pasta forwards no port in
 * either direction (-t/-u/-T/-U none: its default `auto` would expose the
 * host's bound ports on the container's loopback): published ports are our
 * forwarder's (ports/).
 *
 * Failure: ERR_NETWORK_FAILED with the helper's own words; nothing of it runs then.
 */
import { readFileSync } from 'node:fs';
import { open, readFile, writeFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { helperRecord, type HelperName, NETWORK_FILE, NETWORK_LOG, type NetworkHelper, stopHelper } from '@conveyor/lib-common/container/network';
import { startProcess } from '@conveyor/lib-common/subprocess';

/** The interface name inside the container, whichever helper made it (Docker's). */
export const CONTAINER_IFNAME = 'eth0';
/** Where pasta answers DNS queries, forwarding them to the host's first resolver (podman's choice of address). */
export const PASTA_DNS = '169.254.1.1';
/** slirp4netns's fixed network (its defaults for --cidr 10.0.2.0/24). */
export const SLIRP4NETNS = { address: '10.0.2.100', gateway: '10.0.2.2', dns: '10.0.2.3' };

/** What a helper set up: the addresses the names files need. */
export interface SlirpNetwork {
  helper: NetworkHelper;
  /** The container's IPv4 address. */
  address?: string;
  /** The gateway: the host's loopback when host-gateway was asked for. */
  gateway?: string;
  /** A resolver the helper answers on (for resolv.conf when the host has none but loopback ones). */
  dns?: string;
}

export interface HelperOptions {
  /** Absolute path of pasta or slirp4netns. */
  program: string;
  netnsPath: string;
  containerDir: string;
  /** Map the gateway address to the host's loopback (--add-host NAME:host-gateway). */
  hostGateway: boolean;
  /** We run as root: pasta must not drop to nobody (it then cannot join the namespace). */
  root: boolean;
}

/** The host's IPv4 default route (/proc/net/route): its interface and gateway; pasta copies both. */
export function hostDefaultRoute(routeTable?: string): { iface: string; gateway: string } | undefined {
  let text = routeTable;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/net/route', 'utf8');
    } catch {
      return undefined;
    }
  }
  for (const line of text.split('\n').slice(1)) {
    const [iface, destination, gatewayHex, , , , metric, mask] = line.trim().split(/\s+/);
    if (destination !== '00000000' || mask !== '00000000' || !/^[0-9A-Fa-f]{8}$/.test(gatewayHex ?? '') || metric === undefined) continue;
    // Little-endian hex, as the kernel prints it.
    const bytes = [6, 4, 2, 0].map((i) => Number.parseInt(gatewayHex.slice(i, i + 2), 16));
    return { iface, gateway: bytes.join('.') };
  }
  return undefined;
}

function failure(name: string, said: string): ConveyorError {
  // Rootless, the helper opens /dev/net/tun as the user: some images make it 0600 (the kernel's default is 0666).
  const tun = /\btun\b/i.test(said) ? '/dev/net/tun must be readable and writable by you (chmod 0666 /dev/net/tun, as root); ' : '';
  return new ConveyorError('ERR_NETWORK_FAILED', `${name} did not set up the container's network: ${said}`, {
    hint: `${tun}--net private gives a container with only lo; --net host the host network`,
  });
}

async function recordHelper(containerDir: string, helper: NetworkHelper): Promise<void> {
  await writeFile(join(containerDir, NETWORK_FILE), `${JSON.stringify(helper)}\n`, { mode: 0o600 });
}

/** pasta --config-net on the namespace; it daemonizes once eth0 and the routes are configured. */
export async function startPasta(options: HelperOptions): Promise<SlirpNetwork> {
  const pidFile = join(options.containerDir, 'pasta.pid');
  const args = [
    '--quiet',
    '--log-file',
    join(options.containerDir, NETWORK_LOG),
    ...(options.root ? ['--runas', '0'] : []),
    '--config-net',
    '--ns-ifname',
    CONTAINER_IFNAME,
    '--netns',
    options.netnsPath,
    '--pid',
    pidFile,
    '--tcp-ports',
    'none',
    '--udp-ports',
    'none',
    '--tcp-ns',
    'none',
    '--udp-ns',
    'none',
    '--dns-forward',
    PASTA_DNS,
    ...(options.hostGateway ? [] : ['--no-map-gw']),
  ];
  const result = await startProcess(options.program, args, { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' }).result;
  const pid = Number.parseInt(await readFile(pidFile, 'utf8').catch(() => ''), 10);
  if (result.failed || !(pid > 1)) {
    if (pid > 1) await stopHelper(helperRecord('pasta', pid));
    const said = (result.stderr || result.stdout).split('\n').find((l) => l.trim() !== '' && !l.startsWith('Failed to send'));
    throw failure('pasta', said ?? result.shortMessage ?? 'no pid file');
  }
  const helper = helperRecord(helperName(options.program, 'pasta'), pid);
  await recordHelper(options.containerDir, helper);
  const route = hostDefaultRoute();
  const address = route ? networkInterfaces()[route.iface]?.find((a) => a.family === 'IPv4')?.address : undefined;
  return { helper, ...(address ? { address } : {}), ...(route ? { gateway: route.gateway } : {}), dns: PASTA_DNS };
}

/** pasta is installed as passt's link: the process is named after what we ran. */
function helperName(program: string, fallback: HelperName): HelperName {
  return program.endsWith('/passt') ? 'passt' : fallback;
}

/** slirp4netns --configure on the namespace, in its own session; up when it writes to its ready fd. */
export async function startSlirp4netns(options: HelperOptions): Promise<SlirpNetwork> {
  const logFile = await open(join(options.containerDir, NETWORK_LOG), 'a', 0o600);
  let child: ReturnType<typeof startProcess>;
  try {
    child = startProcess(
      options.program,
      [
        '--configure',
        '--mtu=65520',
        ...(options.hostGateway ? [] : ['--disable-host-loopback']),
        '--netns-type=path',
        '--ready-fd=3',
        options.netnsPath,
        CONTAINER_IFNAME,
      ],
      // Its output into a file, never a pipe of ours: it outlives us, and a write to a closed pipe would kill it.
      { stdin: 'ignore', stdout: logFile.fd, stderr: logFile.fd, extraStdio: ['pipe'], detached: true, buffer: false },
    );
  } finally {
    await logFile.close();
  }
  const ready = child.extra[0];
  const outcome = await new Promise<'ready' | 'ended'>((resolve) => {
    ready?.once('data', () => resolve('ready'));
    ready?.once('close', () => resolve('ended'));
    void child.result.then(() => resolve('ended'));
  });
  ready?.destroy();
  if (outcome !== 'ready' || child.pid === undefined) {
    child.kill('SIGKILL');
    const result = await child.result;
    const logged = await readFile(join(options.containerDir, NETWORK_LOG), 'utf8').catch(() => '');
    throw failure('slirp4netns', logged.trim().split('\n').at(-1) || result.shortMessage || 'not ready');
  }
  child.unref();
  const helper = helperRecord('slirp4netns', child.pid);
  await recordHelper(options.containerDir, helper);
  return { helper, address: SLIRP4NETNS.address, gateway: SLIRP4NETNS.gateway, dns: SLIRP4NETNS.dns };
}
