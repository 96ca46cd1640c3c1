/**
 * What the store's containers need kept: the images they were made from,
 * running or stopped (a container that exists keeps its image, as Docker's).
 * Read by img-prune after the gc holds its locks. A container whose state
 * cannot be read is warned about and keeps nothing by its state (its mounted
 * layers are still kept: the gc reads the mount table and the bundles'
 * config.json itself, gc.ts mountedChains).
 */
import { imageRoots, listContainers } from '@conveyor/lib-common/container/state';
import type { ContainerRoots } from '@conveyor/lib-common/gc';
import type { Store } from '@conveyor/lib-common/store';

export async function containerRoots(store: Store, warn: (message: string) => void): Promise<ContainerRoots> {
  return imageRoots(await listContainers(store, { warn }));
}
