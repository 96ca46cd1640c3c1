/** copy/mapped: whether an id exists in a user namespace, from its uid_map/gid_map text (rootless COPY --chown). */
import t from 'tap';
import { idMapped, ownerMapped } from '../src/copy/mapped.js';

const INITIAL = '         0          0 4294967295\n';
const RANGE = '         0       1001          1\n         1     300000      65536\n';
const SINGLE = '         0       1001          1\n';

t.test('idMapped: table', async (t) => {
  // [map, id, expected]
  const cases: [string, string, number, boolean][] = [
    ['initial namespace', INITIAL, 0, true],
    ['initial namespace', INITIAL, 4294967294, true],
    ['range: 0 is the user', RANGE, 0, true],
    ['range: 1000 is a subordinate id', RANGE, 1000, true],
    ['range: the last one', RANGE, 65536, true],
    ['range: one past the end', RANGE, 65537, false],
    ['single: 0', SINGLE, 0, true],
    ['single: 1000 does not exist', SINGLE, 1000, false],
    ['empty map: nothing', '', 0, false],
    ['garbage lines are skipped', 'x y z\n0 5 1\n', 0, true],
  ];
  for (const [what, map, id, expected] of cases) t.equal(idMapped(map, id), expected, `${what}: ${id}`);
});

t.test('ownerMapped: this process (root in the initial namespace maps every id)', async (t) => {
  t.equal(await ownerMapped({ uid: 1000, gid: 1000 }), true);
});
