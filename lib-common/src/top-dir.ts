/**
 * Marks a store directory whose children are unrelated trees (layers/,
 * containers/, volumes/) as the top of directory hierarchies for ext4's
 * Orlov allocator: `chattr +T`, FS_TOPDIR_FL, documented in chattr(1) for
 * exactly this. A new child of such a directory (a layer's staging dir) is
 * then placed in a block group chosen across the filesystem, and its tree
 * follows it, instead of landing beside its parent.
 *
 * Why: on ext4 without a journal (common on VM and ephemeral disks; this
 * machine's root filesystem), the inode allocator will not reuse an inode
 * freed in the last 30 s (330 s while its inode table block is dirty): it
 * walks past each one in the group, from the start of the group, on every
 * allocation (fs/ext4/ialloc.c, find_inode_bit and recently_deleted). A layer
 * unpacked soon after another tree beside it was deleted (img-rm or img-prune
 * then a pull, a benchmark's clean-up) is then quadratic in kernel time:
 * debian's 4,200 files took 3–5 s of system time after an rm -rf of the same
 * tree, 0.4 s in a directory marked this way (tar -xzf, same disk).
 *
 * The flag is only an allocation hint: on another filesystem, without chattr
 * (e2fsprogs), or when it is refused, nothing happens and nothing is reported;
 * every path works the same without it. It is not inherited, so a layer's own
 * subdirectories stay beside their layer.
 *
 * Library code: no `process.*`.
 */
import { runProcess } from './subprocess.js';

/** Sets FS_TOPDIR_FL on `dir`. True when chattr succeeded; false (never throws) otherwise. */
export async function markTopOfHierarchies(dir: string): Promise<boolean> {
  const result = await runProcess('chattr', ['+T', dir]);
  return !result.failed;
}
