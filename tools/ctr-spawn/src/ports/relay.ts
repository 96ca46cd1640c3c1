/**
 * The in-namespace half of the port forwarder, run as `nsenter --net=NETNS
 * node relay/cli.js` by forwarder.ts with an IPC channel. The owner binds the
 * published sockets in the host's namespace and hands them over the channel
 * (Node passes a net.Server or dgram.Socket as a file descriptor, SCM_RIGHTS):
 * a socket keeps the namespace it was made in, so this process accepts on the
 * host and connects inside the container's namespace, one hop per connection
 * (docker-proxy and rootlesskit's port driver relay the same way, in two).
 *
 * Inside it connects to 127.0.0.1:CONTAINERPORT: that reaches services bound
 * to 0.0.0.0, ::, and 127.0.0.1 in the container (not one bound only to the
 * address of eth0, which Docker's proxy would reach through the container's
 * IP). TCP: half-close passed on, backpressure by pipe(), a connection the
 * container refuses is reset for the client, one connection's error never
 * touches another. UDP: one socket inside per client address and port, its
 * replies sent back from the published socket, idle flows closed after
 * UDP_IDLE_MS (docker-proxy's conntrack timeout), at most MAX_UDP_FLOWS (the
 * oldest goes first).
 *
 * The process (relay/cli.ts) lives as long as the channel: the owner's
 * close() or death (even SIGKILL) closes it and the process exits, which
 * frees the host ports. Not a tool: no flags, no records; messages on stderr
 * go to the owner's log.
 */
import dgram from 'node:dgram';
import net from 'node:net';

/** What the owner sends with each handle. */
export interface RelayOrder {
  kind: 'tcp' | 'udp';
  containerPort: number;
}

/** docker-proxy's UDPConnTrackTimeout. */
export const UDP_IDLE_MS = 90_000;
export const MAX_UDP_FLOWS = 1024;
const INSIDE = '127.0.0.1';
/**
 * What the container sends is read into this one buffer, shared by every
 * connection (each read is copied out before the next can happen), in reads
 * of up to 1 MiB rather than the 64 KiB 'data' chunks of a plain socket:
 * about 1.6x the throughput of pipe() here (bench/ports.sh).
 */
const READ_BUFFER = Buffer.allocUnsafe(1 << 20);

function relayTcp(server: net.Server, containerPort: number, warn: (message: string) => void): void {
  // The server was made by Node from the handle, with defaults: half-open
  // connections are what a client that shuts down its sending side needs.
  (server as net.Server & { allowHalfOpen: boolean }).allowHalfOpen = true;
  server.on('connection', (client) => {
    const upstream = net.connect({
      host: INSIDE,
      port: containerPort,
      allowHalfOpen: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (bytes: number) => {
          if (client.write(Buffer.from(READ_BUFFER.subarray(0, bytes)))) return true;
          client.once('drain', () => upstream.resume());
          return false;
        },
      },
    } as net.NetConnectOpts);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    let connected = false;
    upstream.once('connect', () => {
      connected = true;
      client.pipe(upstream);
      upstream.on('end', () => client.end());
    });
    // Refused inside (or reset by the container): the client sees a reset, as with no listener.
    upstream.on('error', () => {
      if (!client.destroyed) client.resetAndDestroy();
    });
    client.on('error', () => {
      if (!upstream.destroyed) connected ? upstream.resetAndDestroy() : upstream.destroy();
    });
    // Both directions ended: nothing more to relay.
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => {
      if (!client.writableEnded) client.end();
    });
  });
  server.on('error', (error) => warn(`tcp ${containerPort}: ${error.message}`));
}

function relayUdp(published: dgram.Socket, containerPort: number, warn: (message: string) => void): void {
  const flows = new Map<string, { socket: dgram.Socket; timer: NodeJS.Timeout }>();
  const drop = (key: string) => {
    const flow = flows.get(key);
    if (!flow) return;
    flows.delete(key);
    clearTimeout(flow.timer);
    flow.socket.close();
  };
  published.on('message', (message, client) => {
    const key = `${client.address}|${client.port}`;
    let flow = flows.get(key);
    if (!flow) {
      if (flows.size >= MAX_UDP_FLOWS) drop(flows.keys().next().value as string);
      const socket = dgram.createSocket('udp4');
      socket.on('message', (reply, from) => {
        // Only the container's port answers for it: anything else inside may not speak as the service.
        if (from.port !== containerPort || from.address !== INSIDE) return;
        published.send(reply, client.port, client.address);
        touch(key);
      });
      // ICMP port unreachable (nobody listens yet) and the like: that flow only.
      socket.on('error', () => drop(key));
      flow = { socket, timer: setTimeout(() => drop(key), UDP_IDLE_MS) };
      flows.set(key, flow);
    }
    touch(key);
    flow.socket.send(message, containerPort, INSIDE);
  });
  published.on('error', (error) => warn(`udp ${containerPort}: ${error.message}`));

  function touch(key: string): void {
    const flow = flows.get(key);
    if (flow) flow.timer.refresh();
  }
}

/**
 * Acts on one order from the owner: relays a handed-over socket, or (`done`,
 * after every socket) says it is ready.
 */
export function handleOrder(order: RelayOrder | { kind: 'done' }, handle: unknown, io: { ready(): void; warn(message: string): void }): void {
  if (order?.kind === 'done') io.ready();
  else if (order?.kind === 'tcp' && handle instanceof net.Server) relayTcp(handle, order.containerPort, io.warn);
  else if (order?.kind === 'udp' && handle instanceof dgram.Socket) relayUdp(handle, order.containerPort, io.warn);
  else io.warn(`unexpected order ${JSON.stringify(order)}`);
}
