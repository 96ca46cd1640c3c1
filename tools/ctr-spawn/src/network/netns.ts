/**
 * A container's persistent network namespace: a new namespace bind-mounted
 * on `<containerDir>/netns` (util-linux `unshare --net=FILE`, as `ip netns
 * add` does), with lo up (by us, or by pasta), made before the runtime starts so that pasta or
 * slirp4netns can be attached to it and the runtime joins it by path (runc
 * brings lo up only in a namespace it makes itself). Removed by lib-common's
 * container/network (removeNetns, tearDownNetwork).
 *
 * Failure: ERR_NETWORK_FAILED, with nothing left mounted.
 */
import { writeFile } from 'node:fs/promises';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { removeNetns } from '@conveyor/lib-common/container/network';
import { runProcess } from '@conveyor/lib-common/subprocess';

/**
 * Makes the namespace on `path` (a new empty file) and brings its lo up, in
 * one process; with `loUp: false` leaves lo to the helper attached next
 * (pasta --config-net brings it up itself: no ip(8) to run).
 */
export async function createNetns(path: string, options: { loUp?: boolean } = {}): Promise<void> {
  // 'wx': never reuse a file (or a planted symlink) that is already there.
  await writeFile(path, '', { flag: 'wx', mode: 0o600 });
  const command = options.loUp === false ? ['true'] : ['ip', 'link', 'set', 'lo', 'up'];
  const result = await runProcess('unshare', [`--net=${path}`, ...command]);
  if (result.failed) {
    await removeNetns(path).catch(() => undefined);
    throw new ConveyorError('ERR_NETWORK_FAILED', `cannot make the network namespace: ${result.stderr.split('\n')[0] || result.shortMessage}`, {
      hint: 'ctr-spawn needs util-linux unshare and iproute2 ip; --net host runs without a namespace',
    });
  }
}
