/**
 * A container's network, set up before the runtime starts and torn down when
 * the container ends (--net):
 *
 * - pasta / slirp4netns: a namespace of its own (netns.ts) with a helper
 *   attached (slirp.ts) that gives it eth0, a default route and the outside
 *   world; the host's loopback only with host-gateway.
 * - private: a namespace of its own with only lo, made by the runtime for a
 *   foreground run that publishes nothing (runtimeNamespace), else ours.
 * - host: the host's namespace; nothing made.
 * - container: the namespace of another running container of the store (its
 *   `netns` file, or its init's /proc/PID/ns/net when it has none); not ours
 *   to tear down.
 *
 * What it makes is in the container directory (`netns`, `network.json`), so
 * lib-common's container/network tears it down for whoever ends the
 * container: ctr-spawn after a foreground run, the supervisor, ctr-rm.
 *
 * Failure: ERR_NETWORK_FAILED (nothing of it left behind),
 * ERR_CONTAINER_NOT_FOUND / ERR_CONTAINER_NOT_RUNNING for container:X.
 */
import { join } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { Store } from '@conveyor/lib-common/store';
import { NETNS_FILE, tearDownNetwork } from '@conveyor/lib-common/container/network';
import { mountsUnder } from '@conveyor/lib-common/overlay/mount';
import { observe, processRuns, resolveContainer } from '@conveyor/lib-common/container/state';
import type { NetworkRequest } from '../options.js';
import { createNetns } from './netns.js';
import { startPasta, startSlirp4netns, type SlirpNetwork } from './slirp.js';

export interface NetworkOptions {
  network: NetworkRequest;
  /** The container's directory: where the namespace file and the helper's record go. */
  containerDir: string;
  store: Store;
  /** --add-host NAME:host-gateway was given: the host's loopback is reachable at the gateway. */
  hostGateway: boolean;
  /** We run as root (pasta's --runas 0). */
  root: boolean;
  /**
   * private: the runtime makes the namespace (and brings its lo up, as runc
   * does for a namespace of its own), no file of ours. For a container that
   * nothing joins by our file: a foreground run that publishes no port (a
   * detached one keeps a file, for its restarts and its relay).
   */
  runtimeNamespace?: boolean;
}

export interface NetworkSetup {
  mode: 'pasta' | 'slirp4netns' | 'private' | 'host' | 'container';
  /** The namespace the container joins; absent for host. */
  netnsPath?: string;
  /** The address at which the host's loopback is reachable (host-gateway), when there is one. */
  gateway?: string;
  /** The container's own address (its hostname's in /etc/hosts). */
  address?: string;
  /** A resolver the helper answers on. */
  dns?: string;
  /** container:X: the container joined. */
  joined?: { id: string; dir: string };
  /** The `network` field of the state and the container record. */
  label: string;
  /** Stops the helper and removes the namespace this setup made (a no-op for host and container:). */
  teardown(): Promise<void>;
}

const nothing = async () => undefined;

export async function setUpNetwork(options: NetworkOptions): Promise<NetworkSetup> {
  const { network } = options;
  if (network.mode === 'host') return { mode: 'host', label: 'host', teardown: nothing };
  if (network.mode === 'container') return joinContainer(options.store, network.ref);
  if (network.mode === 'private' && options.runtimeNamespace) return { mode: 'private', label: 'private', teardown: nothing };
  const netnsPath = join(options.containerDir, NETNS_FILE);
  const teardown = async () => {
    const warnings = await tearDownNetwork(options.containerDir);
    if (warnings.length > 0) throw new Error(warnings.join('; '));
  };
  await createNetns(netnsPath, { loUp: network.mode !== 'pasta' });
  if (network.mode === 'private') return { mode: 'private', netnsPath, label: 'private', teardown };
  let helper: SlirpNetwork;
  try {
    const helperOptions = { program: network.program, netnsPath, containerDir: options.containerDir, hostGateway: options.hostGateway, root: options.root };
    helper = network.mode === 'pasta' ? await startPasta(helperOptions) : await startSlirp4netns(helperOptions);
  } catch (error) {
    await tearDownNetwork(options.containerDir);
    throw error;
  }
  return {
    mode: network.mode,
    netnsPath,
    ...(options.hostGateway && helper.gateway ? { gateway: helper.gateway } : {}),
    ...(helper.address ? { address: helper.address } : {}),
    ...(helper.dns ? { dns: helper.dns } : {}),
    label: network.mode,
    teardown,
  };
}

/**
 * The setup a run would make, making nothing (--print-spec): the namespace
 * path it would have; container:X resolved and checked as for a run.
 */
export async function planNetwork(options: Pick<NetworkOptions, 'network' | 'containerDir' | 'store' | 'runtimeNamespace'>): Promise<NetworkSetup> {
  const { network } = options;
  if (network.mode === 'host') return { mode: 'host', label: 'host', teardown: nothing };
  if (network.mode === 'container') return joinContainer(options.store, network.ref);
  if (network.mode === 'private' && options.runtimeNamespace) return { mode: 'private', label: 'private', teardown: nothing };
  return { mode: network.mode, netnsPath: join(options.containerDir, NETNS_FILE), label: network.mode, teardown: nothing };
}

/** --net container:X: X must run; its namespace file, else its init's namespace (a container on the host's network). */
async function joinContainer(store: Store, ref: string): Promise<NetworkSetup> {
  const entry = await resolveContainer(store, ref);
  const state = entry.state ? observe(entry.state) : undefined;
  if (state?.status !== 'running' || !state.pid || !processRuns(state.pid, state.pidStartTime)) {
    throw new ConveyorError('ERR_CONTAINER_NOT_RUNNING', `--net container:${ref}: the container is not running`, { hint: 'start it first (ctr-spawn -d)' });
  }
  const own = join(entry.dir, NETNS_FILE);
  const netnsPath = (await mountsUnder(own)).length > 0 ? own : `/proc/${state.pid}/ns/net`;
  return { mode: 'container', netnsPath, joined: { id: entry.id, dir: entry.dir }, label: `container:${entry.id}`, teardown: nothing };
}
