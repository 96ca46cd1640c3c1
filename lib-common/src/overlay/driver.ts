/**
 * Which way a container's root filesystem is put together (its `driver`), as
 * overlay-mount's `mount` records and ctr-spawn's container state report it:
 *
 *  - `overlay`: kernel overlayfs (as root; rootless, inside the user's
 *    namespace, with `userxattr`: opaque dirs are then `user.overlay.opaque`);
 *  - `fuse-overlayfs`: the FUSE implementation, rootless where the kernel
 *    refuses (older kernels, a store on a filesystem overlayfs cannot use as
 *    upper inside a user namespace); needs fuse-overlayfs and /dev/fuse;
 *  - `copy`: the layers copied in order, whiteouts applied, into the upper
 *    dir, bind-mounted on merged (copy.ts): slow, but needs nothing.
 *
 * As root only `overlay` is tried; rootless the three in that order. The
 * environment variable CONVEYOR_OVERLAY_DRIVER forces one (a testing and
 * escape hatch: no fallback then). Pure functions but mountedDriver, which
 * reads this mount namespace's mount table.
 *
 * Failure: parseDriver throws ERR_USAGE for an unknown name; mountedDriver
 * resolves to undefined when nothing is mounted there or the table is
 * unreadable.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ConveyorError } from '../errors.js';

export type OverlayDriver = 'overlay' | 'fuse-overlayfs' | 'copy';

export const OVERLAY_DRIVERS: readonly OverlayDriver[] = ['overlay', 'fuse-overlayfs', 'copy'];
/** The environment variable that forces a driver (cli.ts reads it). */
export const DRIVER_ENV = 'CONVEYOR_OVERLAY_DRIVER';

/** The forced driver named by CONVEYOR_OVERLAY_DRIVER; undefined for unset, empty or `auto`. */
export function parseDriver(value: string | undefined): OverlayDriver | undefined {
  if (value === undefined || value === '' || value === 'auto') return undefined;
  if ((OVERLAY_DRIVERS as readonly string[]).includes(value)) return value as OverlayDriver;
  throw new ConveyorError('ERR_USAGE', `${DRIVER_ENV}=${JSON.stringify(value)}: not a driver`, { hint: `one of ${OVERLAY_DRIVERS.join(', ')}, or auto` });
}

/** The drivers to try, in order. */
export function driverOrder(rootless: boolean, forced?: OverlayDriver): OverlayDriver[] {
  if (forced) return [forced];
  return rootless ? [...OVERLAY_DRIVERS] : ['overlay'];
}

/** The driver that made a mount of filesystem type `fstype` on a merged dir (a bind of the upper dir is a copy). */
export function driverOfFsType(fstype: string): OverlayDriver {
  if (fstype === 'overlay') return 'overlay';
  if (fstype === 'fuse.fuse-overlayfs' || fstype === 'fuse-overlayfs') return 'fuse-overlayfs';
  return 'copy';
}

/** The filesystem type mounted at `target` in a mountinfo text (the last mount there wins); undefined when none. */
export function fsTypeAt(mountinfo: string, target: string): string | undefined {
  let found: string | undefined;
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (dash < 0 || fields.length < 5) continue;
    const point = fields[4].replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
    if (point === target) found = fields[dash + 1];
  }
  return found;
}

/** The driver of what is mounted on `merged` in this mount namespace; undefined when nothing is. */
export async function mountedDriver(merged: string): Promise<OverlayDriver | undefined> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const fstype = fsTypeAt(text, resolve(merged));
  return fstype === undefined ? undefined : driverOfFsType(fstype);
}
