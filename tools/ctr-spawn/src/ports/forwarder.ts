/**
 * The published ports of a container, owned by ctr-spawn (foreground) or the
 * detached container's supervisor: startForwarder binds every host socket
 * first, in the host's network namespace (a TCP listener, a UDP socket), so a
 * taken port fails the run before the container starts and leaves nothing
 * bound; then it starts one relay process inside the container's network
 * namespace (`nsenter --net=NETNS node relay/cli.js`, relay.ts) and hands it the
 * bound sockets over an IPC channel. From then on the relay holds the only
 * copies: close() (or the owner's death, which closes the channel) ends it,
 * and the ports are free again.
 *
 * node:child_process rather than execa here: the relay is given sockets over
 * Node's IPC channel (`send(message, handle)`), which execa's IPC does not carry.
 *
 * Failure: ERR_PORT_UNAVAILABLE naming the address and port that cannot be
 * bound (taken, not an address of this host, privileged); ERR_SPAWN_FAILED
 * when the relay cannot be started in the namespace. Both after closing
 * whatever was bound.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { formatHost, type PortMapping } from './publish.js';
import type { RelayOrder } from './relay.js';

/** The relay's entry, beside this module in dist/. */
export const RELAY_ENTRY = fileURLToPath(new URL('./relay/cli.js', import.meta.url));

export interface ForwarderOptions {
  /** The container's network namespace, a bind-mounted nsfs file (N1's `<containerDir>/netns`). */
  netnsPath: string;
  mappings: PortMapping[];
  /** Where the relay's messages go. */
  log?: { warn(message: string): void };
  /** The Node binary that runs the relay (cli.ts's process.execPath). */
  execPath: string;
  /** nsenter (util-linux), default from PATH. */
  nsenter?: string;
}

export interface Forwarder {
  /** The mappings, host ports resolved (a 0 is the port the kernel picked). */
  ports: PortMapping[];
  /** Ends the relay and frees the ports; safe to call twice. */
  close(): Promise<void>;
}

type Bound = { mapping: PortMapping; handle: net.Server | dgram.Socket };

const RELAY_START_MS = 10_000;
const RELAY_STOP_MS = 3_000;

function unavailable(mapping: PortMapping, error: NodeJS.ErrnoException): ConveyorError {
  const where = `${formatHost(mapping)}/${mapping.protocol}`;
  const hint =
    error.code === 'EADDRINUSE'
      ? 'another process (or container) has it: choose another host port, or none for a free one (-p 127.0.0.1::80)'
      : error.code === 'EADDRNOTAVAIL'
        ? 'the host address is not one of this host: use 127.0.0.1, 0.0.0.0 or an address of an interface'
        : error.code === 'EACCES'
          ? 'ports below 1024 need root (or net.ipv4.ip_unprivileged_port_start)'
          : undefined;
  return new ConveyorError('ERR_PORT_UNAVAILABLE', `cannot publish ${where}: ${error.code ?? error.message}`, hint ? { hint } : undefined);
}

/** Binds one mapping in our (the host's) namespace; rejects with ERR_PORT_UNAVAILABLE. */
function bindOne(mapping: PortMapping): Promise<Bound> {
  return new Promise((resolve, reject) => {
    if (mapping.protocol === 'tcp') {
      const server = net.createServer({ pauseOnConnect: true });
      // A connection accepted here, in the moment before the relay has the socket, has no one to relay it.
      server.on('connection', (socket) => socket.destroy());
      server.once('error', (error) => reject(unavailable(mapping, error)));
      // exclusive: never share the port with a cluster primary; backlog as Docker's proxy (Go's default, somaxconn).
      server.listen({ host: mapping.hostIP, port: mapping.hostPort, exclusive: true, backlog: 4096 }, () => {
        server.removeAllListeners('error');
        resolve({ mapping: { ...mapping, hostPort: (server.address() as net.AddressInfo).port }, handle: server });
      });
    } else {
      const socket = dgram.createSocket({ type: net.isIPv6(mapping.hostIP) ? 'udp6' : 'udp4' });
      socket.once('error', (error) => {
        socket.close();
        reject(unavailable(mapping, error));
      });
      socket.bind({ address: mapping.hostIP, port: mapping.hostPort, exclusive: true }, () => {
        socket.removeAllListeners('error');
        resolve({ mapping: { ...mapping, hostPort: socket.address().port }, handle: socket });
      });
    }
  });
}

/** Binds a mapping; one with a host range takes its first free port (Docker's). */
async function bindMapping(mapping: PortMapping): Promise<Bound> {
  const { hostPortEnd, ...single } = mapping;
  if (hostPortEnd === undefined) return bindOne(single);
  for (let port = mapping.hostPort; port <= hostPortEnd; port++) {
    try {
      return await bindOne({ ...single, hostPort: port });
    } catch (error) {
      // Taken: the next one. Anything else (not an address of this host) is the same for every port.
      if (!/EADDRINUSE/.test((error as Error).message)) throw error;
    }
  }
  throw new ConveyorError('ERR_PORT_UNAVAILABLE', `cannot publish ${formatHost(mapping)}/${mapping.protocol}: every port of the range is taken`, {
    hint: 'choose another range, or no host port for a free one',
  });
}

function closeHandle(handle: net.Server | dgram.Socket): void {
  try {
    handle.close();
  } catch {
    // already closed
  }
}

/** Binds every mapping, in order; on the first failure closes the others and rethrows. */
export async function bindAll(mappings: PortMapping[]): Promise<Bound[]> {
  const bound: Bound[] = [];
  try {
    // One by one: a port 0 must not be handed the port a later explicit mapping names.
    for (const mapping of mappings) bound.push(await bindMapping(mapping));
    return bound;
  } catch (error) {
    for (const b of bound) closeHandle(b.handle);
    throw error;
  }
}

/** Resolves when the child has exited (at once when it already has). */
function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * Binds the mappings and starts the relay in `netnsPath`. No mappings: a
 * forwarder with nothing to close, and no relay.
 */
export async function startForwarder(options: ForwarderOptions): Promise<Forwarder> {
  if (options.mappings.length === 0) return { ports: [], close: async () => undefined };
  const bound = await bindAll(options.mappings);
  const child = spawn(options.nsenter ?? 'nsenter', [`--net=${options.netnsPath}`, options.execPath, '--', RELAY_ENTRY], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    // Off our process group: a Ctrl-C at the terminal goes to the container, and the relay stays until close().
    detached: true,
    // Not our working directory: it would keep that file system busy.
    cwd: '/',
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-2000);
    for (const line of chunk.split('\n').filter(Boolean)) options.log?.warn(line);
  });
  const closeBound = () => {
    for (const b of bound) closeHandle(b.handle);
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no word from the relay in ${RELAY_START_MS / 1000} s`)), RELAY_START_MS);
      const fail = (error: Error) => {
        clearTimeout(timer);
        reject(error);
      };
      child.once('error', fail);
      child.once('exit', (code, signal) => fail(new Error(`the relay ended (${signal ?? `exit code ${code}`}) ${stderr.trim()}`.trim())));
      child.on('message', (message: { ready?: boolean }) => {
        if (message?.ready) {
          clearTimeout(timer);
          resolve();
        }
      });
      // Sent in order on one channel: `done` arrives after every handle.
      for (const b of bound) {
        const order: RelayOrder = { kind: b.mapping.protocol, containerPort: b.mapping.containerPort };
        child.send(order, b.handle as net.Server);
      }
      child.send({ kind: 'done' });
    });
  } catch (error) {
    closeBound();
    child.kill('SIGKILL');
    await exited(child);
    throw new ConveyorError('ERR_SPAWN_FAILED', `cannot start the port relay in ${options.netnsPath}: ${(error as Error).message}`);
  } finally {
    child.removeAllListeners('exit');
    child.removeAllListeners('error');
  }
  // The relay has its own copies now: ours would keep accepting beside it.
  closeBound();
  child.on('error', () => undefined);
  // The owner waits for its container, not for the relay: close() ends it, and our death does too.
  child.unref();
  (child as ChildProcess & { channel?: { unref(): void } }).channel?.unref();
  (child.stderr as (Readable & { unref?(): void }) | null)?.unref?.();
  let closing: Promise<void> | undefined;
  return {
    ports: bound.map((b) => b.mapping),
    close() {
      closing ??= (async () => {
        if (child.connected) child.disconnect();
        const stop = setTimeout(() => child.kill('SIGKILL'), RELAY_STOP_MS);
        await exited(child);
        clearTimeout(stop);
      })();
      return closing;
    },
  };
}
