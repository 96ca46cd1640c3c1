/**
 * ctr-spawn's volumes: `-v NAME:/path[:ro|nocopy]`, `-v /path` (anonymous),
 * `--mount type=volume,...` parsed into Volume entries, and attachVolumes,
 * which turns them and the image's VOLUMEs into bind mounts of volume
 * directories (lib-common/container/volumes): a named volume is created on
 * first use, every image VOLUME that no -v, --mount or --tmpfs covers gets an
 * anonymous volume owned by this container, and an empty volume is seeded
 * from the image's content at its path (unless nocopy), as Docker does.
 *
 * Failure: ERR_USAGE for a malformed volume name or mode; attachVolumes
 * throws what container/volumes throws (ERR_SPAWN_FAILED when the image's path
 * is a file or the copy fails). Anonymous volumes made before a failure belong
 * to the container and go with its clean-up (removeAnonymousVolumes).
 */
import { posix } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { Store } from '@conveyor/lib-common/store';
import { createVolume, isVolumeName, newAnonymousName, seedVolume, volumeOfSource } from '@conveyor/lib-common/container/volumes';
import type { Volume } from './spec.js';

const VOLUME_MODES = ['ro', 'rw', 'nocopy', 'z', 'Z'];

/** A Volume that names a volume ('' for a new anonymous one); its source is set by attachVolumes. */
export function volumeEntry(name: string, destination: string, options: { readOnly: boolean; noCopy: boolean; where: string }): Volume {
  if (name !== '' && !isVolumeName(name)) {
    throw new ConveyorError('ERR_USAGE', `${options.where}: invalid volume name ${JSON.stringify(name)}`, {
      hint: 'a volume name is 2 to 255 of [a-zA-Z0-9_.-], starting with a letter or digit; a host path must be absolute',
    });
  }
  return { source: '', destination, readOnly: options.readOnly, volume: name, ...(options.noCopy ? { noCopy: true } : {}) };
}

/**
 * `-v` when it names a volume: `/ctr` alone (anonymous) or `NAME:/ctr[:MODES]`
 * (a source without a slash, as Docker tells them apart). Undefined for a
 * bind mount (an absolute host path), which parseVolume handles.
 */
export function parseVolumeFlag(spec: string, containerPath: (path: string, what: string) => string): Volume | undefined {
  const parts = spec.split(':');
  const where = `-v ${spec}`;
  if (parts.length === 1) return volumeEntry('', containerPath(spec, where), { readOnly: false, noCopy: false, where });
  if (parts.length > 3 || parts[0].includes('/')) return undefined;
  const modes = (parts[2] ?? 'rw').split(',');
  const bad = modes.find((m) => !VOLUME_MODES.includes(m));
  if (bad !== undefined) throw new ConveyorError('ERR_USAGE', `${where}: unknown mode ${JSON.stringify(bad)}`, { hint: `modes: ${VOLUME_MODES.join(', ')}` });
  if (modes.includes('ro') && modes.includes('rw')) throw new ConveyorError('ERR_USAGE', `${where}: ro and rw contradict each other`);
  return volumeEntry(parts[0], containerPath(parts[1], where), { readOnly: modes.includes('ro'), noCopy: modes.includes('nocopy'), where });
}

/** The image config's Volumes (`{"/cache": {}}`) as clean absolute container paths; others are ignored. */
export function imageVolumePaths(volumes: unknown): string[] {
  if (!volumes || typeof volumes !== 'object' || Array.isArray(volumes)) return [];
  const paths = Object.keys(volumes)
    .filter((p) => p.startsWith('/'))
    .map((p) => posix.normalize(p).replace(/(.)\/+$/, '$1'))
    .filter((p) => p !== '/');
  return [...new Set(paths)];
}

/**
 * The volumes of a container, attached: named ones created (and seeded when
 * empty), anonymous ones made for `-v /path` and for each image VOLUME that
 * no other mount targets. Resolves to every Volume with its source set.
 */
export async function attachVolumes(
  store: Store,
  input: { id: string; rootfs: string; volumes: Volume[]; imageVolumes: unknown; otherTargets: string[] },
): Promise<Volume[]> {
  const targets = new Set([...input.volumes.map((v) => v.destination), ...input.otherTargets]);
  const wanted = [
    ...input.volumes,
    ...imageVolumePaths(input.imageVolumes)
      .filter((path) => !targets.has(path))
      .map((destination) => volumeEntry('', destination, { readOnly: false, noCopy: false, where: 'image VOLUME' })),
  ];
  const attached: Volume[] = [];
  for (const volume of wanted) {
    if (volume.volume === undefined) {
      attached.push(volume);
      continue;
    }
    const anonymous = volume.volume === '';
    const { volume: info } = await createVolume(store, anonymous ? newAnonymousName() : volume.volume, { anonymous, container: input.id });
    if (!volume.noCopy) await seedVolume(input.rootfs, volume.destination, info.mountpoint);
    attached.push({ ...volume, volume: info.name, source: info.mountpoint });
  }
  return attached;
}

/**
 * Whether attachVolumes would seed a volume from the image: a named or anonymous `-v` without
 * nocopy, or an image VOLUME no other mount targets (an anonymous volume, always seeded). Pure.
 */
export function seedsVolumes(volumes: Volume[], imageVolumes: unknown, otherTargets: string[]): boolean {
  if (volumes.some((v) => v.volume !== undefined && !v.noCopy)) return true;
  const targets = new Set([...volumes.map((v) => v.destination), ...otherTargets]);
  return imageVolumePaths(imageVolumes).some((path) => !targets.has(path));
}

/** The volumes a spec mounts (for state.json), from its mount sources. */
export function specVolumes(store: Store, spec: Record<string, unknown>): string[] {
  const mounts = Array.isArray(spec.mounts) ? (spec.mounts as { source?: unknown }[]) : [];
  const names = mounts.map((m) => (typeof m.source === 'string' ? volumeOfSource(store, m.source) : undefined)).filter((n): n is string => n !== undefined);
  return [...new Set(names)];
}
