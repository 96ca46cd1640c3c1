// A slow link in front of the bench's registry: a loopback TCP proxy that passes the registry's
// bytes to its clients at most RATE Mbit/s, all connections together (one link), so that a pull
// takes as long as the network makes it, as from a real registry. Requests go upstream unshaped.
// Used by run.sh's slow-link row, where unpacking during the download matters (issue 17).
//   node bench/slow-link.mjs --to 127.0.0.1:PORT --rate MBIT     prints the port it listens on
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { to: { type: 'string' }, rate: { type: 'string' } } });
const [host, port] = (values.to ?? '').split(':');
const bytesPerMs = (Number(values.rate) * 1e6) / 8 / 1000;
if (!host || !port || !(bytesPerMs > 0)) {
  console.error('usage: node bench/slow-link.mjs --to HOST:PORT --rate MBIT');
  process.exit(2);
}

/** When the link has sent everything given to it so far (ms, performance.now()). */
let linkFreeAt = 0;

const server = net.createServer((client) => {
  const upstream = net.connect(Number(port), host);
  client.pipe(upstream);
  upstream.on('data', (chunk) => {
    const now = performance.now();
    linkFreeAt = Math.max(now, linkFreeAt) + chunk.length / bytesPerMs;
    client.write(chunk);
    // Hold the registry back until the link has carried this chunk.
    const wait = linkFreeAt - now;
    if (wait > 1) {
      upstream.pause();
      setTimeout(() => upstream.resume(), wait);
    }
  });
  upstream.on('end', () => client.end());
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  upstream.on('error', close);
  client.on('error', close);
  client.on('close', () => upstream.destroy());
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
