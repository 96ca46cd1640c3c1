/**
 * Scripted HTTP servers for the raw-path tests: each reads request heads and
 * lets a script answer with exact bytes (split heads, lies, cuts, stalls),
 * on loopback; every connection is destroyed at the test's teardown.
 */
import type { Test } from 'tap';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';

export interface Seen {
  head: string;
  headers: Record<string, string>;
}
export type Script = (socket: Socket, req: Seen, n: number) => void;

/** A request head (without its blank line): the request line and the headers, names lower-cased. */
function parseRequestHead(text: string): Seen {
  const lines = text.split('\r\n');
  const headers = Object.fromEntries(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  return { head: lines[0], headers };
}

/**
 * Listens on a free loopback port and returns its `host:port`; every connection is tracked (errors ignored: the
 * scripts cut connections on purpose) so the teardown can destroy them before it closes the server.
 */
async function listenTracked(t: Test, server: Server, sockets: Set<Socket>): Promise<string> {
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A server that reads each request head and lets `script` answer with exact bytes; `n` counts earlier requests. */
export async function scripted(t: Test, script: Script, tls?: { key: Buffer; cert: Buffer }): Promise<{ host: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const onSocket = (socket: Socket) => {
    // The TLS socket too (listenTracked's handler is on the TCP one below it).
    socket.on('error', () => undefined);
    let text = '';
    const onData = (data: Buffer) => {
      text += data.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      const req = parseRequestHead(text.slice(0, end));
      seen.push(req);
      script(socket, req, seen.length - 1);
    };
    socket.on('data', onData);
  };
  const server: Server = tls ? createTlsServer(tls, onSocket) : createServer(onSocket);
  return { host: await listenTracked(t, server, new Set<Socket>()), seen };
}

/**
 * A server that answers every request of a connection in turn (keep-alive), counting connections:
 * `script` gets the request, its number over all connections and its connection's number.
 */
export async function keepAliveServer(t: Test, script: (socket: Socket, req: Seen, n: number, connection: number) => void) {
  const seen: (Seen & { connection: number })[] = [];
  let connections = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    const connection = connections++;
    let text = '';
    socket.on('data', (data) => {
      text += data.toString('latin1');
      for (let end = text.indexOf('\r\n\r\n'); end >= 0; end = text.indexOf('\r\n\r\n')) {
        const req = parseRequestHead(text.slice(0, end));
        text = text.slice(end + 4);
        seen.push({ ...req, connection });
        script(socket, req, seen.length - 1, connection);
      }
    });
  });
  return { host: await listenTracked(t, server, sockets), seen, connections: () => connections, sockets };
}
