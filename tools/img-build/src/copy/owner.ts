/**
 * COPY/ADD --chown: `user`, `user:group`, `uid`, `uid:gid`, names looked up in
 * the stage's own /etc/passwd and /etc/group, read inside the rootfs (a
 * symlinked /etc/passwd is resolved within it: lib-common's readRootFile).
 * As the Dockerfile reference says, a user without a group uses the same
 * number as the gid (not the user's primary group).
 */
import { readRootFile } from '@conveyor/lib-common/container/rootfs';
import { parseGroup, parsePasswd } from '@conveyor/lib-common/container/user';
import { ConveyorError } from '@conveyor/lib-common/errors';

const MAX_ID = 2 ** 32 - 2;

function numericId(text: string): number | undefined {
  if (!/^\d{1,10}$/.test(text)) return undefined;
  const id = Number(text);
  return id <= MAX_ID ? id : undefined;
}

export async function resolveOwner(rootfs: string, spec: string): Promise<{ uid: number; gid: number }> {
  const parts = spec.split(':');
  if (parts.length > 2 || parts[0] === '' || parts[1] === '') {
    throw new ConveyorError('ERR_BUILD_OWNER', `invalid --chown ${JSON.stringify(spec)}`, { hint: 'use user, user:group, uid or uid:gid' });
  }
  const [userPart, groupPart] = parts;
  let uid = numericId(userPart);
  if (uid === undefined) {
    const passwd = parsePasswd((await readRootFile(rootfs, '/etc/passwd')) ?? '');
    const entry = passwd.find((candidate) => candidate.name === userPart);
    if (!entry) {
      throw new ConveyorError('ERR_BUILD_OWNER', `--chown ${spec}: no user ${JSON.stringify(userPart)} in the image's /etc/passwd`, {
        hint: 'use a numeric uid or a user the image defines',
      });
    }
    uid = entry.uid;
  }
  if (groupPart === undefined) return { uid, gid: uid };
  let gid = numericId(groupPart);
  if (gid === undefined) {
    const groups = parseGroup((await readRootFile(rootfs, '/etc/group')) ?? '');
    const group = groups.find((candidate) => candidate.name === groupPart);
    if (!group) {
      throw new ConveyorError('ERR_BUILD_OWNER', `--chown ${spec}: no group ${JSON.stringify(groupPart)} in the image's /etc/group`, {
        hint: 'use a numeric gid or a group the image defines',
      });
    }
    gid = group.gid;
  }
  return { uid, gid };
}
