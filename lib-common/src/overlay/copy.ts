/**
 * The `copy` driver's tree: the image's layer dirs (lower layers as
 * layer-unpack leaves them for overlayfs) copied bottom first into one
 * directory with overlayfs's meaning applied: a 0/0 character device (a
 * whiteout) removes what lower layers put at its path and is not copied; a
 * directory marked opaque (`user.overlay.opaque` or `trusted.overlay.opaque`
 * = y) hides the lower layers' contents; an entry of another type replaces
 * what was there. Each layer is copied by `cp -a` (owners, modes, times,
 * hardlinks, xattrs), after the paths it replaces were removed.
 *
 * Failure: ERR_MOUNT_FAILED with cp's or getfattr's message (a layer with
 * files of ids the user namespace does not map cannot be copied: cp cannot
 * preserve their owners); the caller removes the half-made tree.
 */
import type { Dirent } from 'node:fs';
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ConveyorError } from '../errors.js';
import { runProcess } from '../subprocess.js';

const OPAQUE_ATTRS = /^(user|trusted)\.overlay\.opaque$/;

/** Decodes getfattr's octal escapes in a `# file:` path. */
function unescapeGetfattr(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/**
 * The directories of a `getfattr -R -d` dump whose opaque xattr is "y", relative
 * to `base` (the dump's absolute names). Pure.
 */
export function parseOpaqueDump(dump: string, base: string): Set<string> {
  const found = new Set<string>();
  let file: string | undefined;
  for (const line of dump.split('\n')) {
    if (line.startsWith('# file: ')) file = unescapeGetfattr(line.slice('# file: '.length));
    else if (file !== undefined && /^(user|trusted)\.overlay\.opaque="y"$/.test(line)) {
      const rel = file === base ? '' : file.startsWith(base + '/') ? file.slice(base.length + 1) : undefined;
      if (rel !== undefined) found.add(rel);
    }
  }
  return found;
}

async function opaqueDirs(layer: string): Promise<Set<string>> {
  const result = await runProcess('getfattr', ['-R', '-h', '--absolute-names', '-d', '-m', OPAQUE_ATTRS.source, layer]);
  if (result.code !== undefined) {
    throw new ConveyorError('ERR_MOUNT_FAILED', `cannot run getfattr: ${result.originalMessage ?? result.shortMessage}`, { hint: 'install attr' });
  }
  // getfattr exits 1 when some file had no readable xattrs: what it printed is what there is.
  return parseOpaqueDump(result.stdout, layer);
}

async function lstatOrUndefined(path: string) {
  return lstat(path).catch(() => undefined);
}

/**
 * Removes from `dest` what the layer at `layer` hides or replaces, walking the
 * layer; returns the whiteouts' relative paths (cp copies them as device nodes:
 * removed afterwards).
 */
async function clearReplaced(layer: string, dest: string, opaque: Set<string>): Promise<string[]> {
  const whiteouts: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await readdir(join(layer, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = rel === '' ? entry.name : `${rel}/${entry.name}`;
      const target = join(dest, path);
      if (entry.isCharacterDevice()) {
        const info = await lstat(join(layer, path));
        if (info.rdev === 0) {
          whiteouts.push(path);
          await rm(target, { recursive: true, force: true });
          continue;
        }
      }
      const there = await lstatOrUndefined(target);
      if (entry.isDirectory()) {
        if (there && (!there.isDirectory() || opaque.has(path))) await rm(target, { recursive: true, force: true });
        await walk(path);
      } else if (there) {
        await rm(target, { recursive: true, force: true });
      }
    }
  };
  await walk('');
  return whiteouts;
}

/** Copies `lowerDirs` (bottom first) into `dest` (an existing empty directory), as overlayfs would show them. */
export async function copyLayers(lowerDirs: string[], dest: string): Promise<void> {
  for (const layer of lowerDirs) {
    const opaque = await opaqueDirs(layer);
    // The layer's own root marked opaque hides everything below it.
    if (opaque.has('')) {
      for (const name of await readdir(dest)) await rm(join(dest, name), { recursive: true, force: true });
    }
    const whiteouts = await clearReplaced(layer, dest, opaque);
    const result = await runProcess('cp', ['-a', '--', `${layer}/.`, `${dest}/`]);
    if (result.failed) {
      const why = result.code !== undefined ? (result.originalMessage ?? result.shortMessage) : result.stderr.split('\n')[0].trim() || result.shortMessage;
      // A file of an id the user namespace does not map cannot be given to it (the kernel overlay shows it as nobody).
      const hint = /preserve ownership/.test(why)
        ? 'the layer holds files of ids your user namespace does not map: unpack the image as this user (layer-unpack)'
        : 'check free space in the store';
      throw new ConveyorError('ERR_MOUNT_FAILED', `copying layer ${layer} failed: ${why}`, { hint });
    }
    for (const path of whiteouts) {
      const info = await lstatOrUndefined(join(dest, path));
      if (info?.isCharacterDevice() && info.rdev === 0) await rm(join(dest, path), { force: true });
    }
  }
}
