/**
 * The port relay's entry: `nsenter --net=NETNS node relay/cli.js`, started
 * by forwarder.ts with an IPC channel over which it is handed the published
 * sockets (../relay.ts relays them). It exits when the channel closes: its
 * owner closed the forwarder, or died. Not a tool of its own.
 */
import { handleOrder } from '../relay.js';

const warn = (message: string) => process.stderr.write(`relay: ${message}\n`);
if (!process.send) {
  warn('started without its owner (no IPC channel)');
  process.exit(2);
}
process.on('message', (order: Parameters<typeof handleOrder>[0], handle: unknown) =>
  handleOrder(order, handle, { ready: () => process.send?.({ ready: true }), warn }),
);
// The owner closed the channel or died: the published ports go with us.
process.on('disconnect', () => process.exit(0));
