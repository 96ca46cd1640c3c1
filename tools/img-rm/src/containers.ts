/**
 * The store's containers as img-rm needs them: which image each was made
 * from. A container directory whose state cannot be read is warned about
 * and counts as using nothing (ctr-rm -f removes it).
 */
import { imageOf, listContainers } from '@conveyor/lib-common/container/state';
import type { Store } from '@conveyor/lib-common/store';
import type { ContainerUse } from './remove.js';

export async function containerUses(store: Store, warn: (message: string) => void): Promise<ContainerUse[]> {
  return (await listContainers(store, { warn })).flatMap(({ id, state }) => {
    if (!state) return [];
    const { digest: image, ref } = imageOf(state);
    return [{ id, status: state.status, ...(state.name ? { name: state.name } : {}), ...(image ? { image } : {}), ...(ref ? { ref } : {}) }];
  });
}
