/**
 * The store's containers as img-rm needs them: which image each was made
 * from. A container directory whose state cannot be read is warned about
 * and counts as using nothing (ctr-rm -f removes it).
 */
import { listContainers } from '@conveyor/lib-common/container/state';
import { SHA256_DIGEST } from '@conveyor/lib-common/digest';
import type { Store } from '@conveyor/lib-common/store';
import type { ContainerUse } from './remove.js';

export async function containerUses(store: Store, warn: (message: string) => void): Promise<ContainerUse[]> {
  return (await listContainers(store, { warn })).flatMap(({ id, state }) => {
    if (!state) return [];
    const image = typeof state.image === 'string' && SHA256_DIGEST.test(state.image) ? state.image : undefined;
    const ref = typeof state.ref === 'string' ? state.ref : undefined;
    return [{ id, status: state.status, ...(state.name ? { name: state.name } : {}), ...(image ? { image } : {}), ...(ref ? { ref } : {}) }];
  });
}
