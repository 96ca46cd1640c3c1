/**
 * rootless/detect and rootless/subid: the pure decisions, table-driven (am I rootless, which
 * subordinate range a user has, which mapping a namespace gets, unshare's options for it).
 */
import t from 'tap';
import { isInitialUidMap, rootlessFor } from '../src/rootless/detect.js';
import { unshareArgs } from '../src/rootless/keeper.js';
import { chooseMapping, formatMap, isMapped, normaliseMap, ownableIds, parseMap, parseSubordinateIds } from '../src/rootless/subid.js';

// [uid_map text, is it the initial namespace's]
const uidMaps: [string, boolean][] = [
  ['         0          0 4294967295\n', true],
  ['0 0 4294967295', true],
  ['', true],
  ['         0       1000          1\n', false],
  ['0 1000 1\n1 300000 65536\n', false],
  ['0 0 4294967294\n', false],
  ['0 0 4294967295\n1 1 1\n', false],
];
for (const [text, initial] of uidMaps) t.equal(isInitialUidMap(text), initial, `uid_map ${JSON.stringify(text)}`);

// [euid, uid_map, rootless]
const identities: [number, string, boolean][] = [
  [0, '0 0 4294967295', false],
  [1000, '0 0 4294967295', true],
  [0, '0 1000 1', true],
  [0, '0 1000 1\n1 300000 65536', true],
  [65534, '', true],
];
for (const [euid, uidMap, rootless] of identities) t.equal(rootlessFor({ euid, uidMap }), rootless, `euid ${euid}, ${JSON.stringify(uidMap)}`);

const SUBUID = `# comment: alice:1:2
alice:100000:65536
bob:x:65536
bob:200000:0
bob:200000
1002:300000:1000
bob:400000:65536
alice:500000:65536
carol :600000:10
  dave:700000:10  
eve:4294967290:10
`;
// [user, range]
const ranges: [{ name?: string; id: number }, { start: number; count: number } | undefined][] = [
  [
    { name: 'alice', id: 1000 },
    { start: 100000, count: 65536 },
  ],
  [
    { name: 'bob', id: 1001 },
    { start: 400000, count: 65536 },
  ],
  [
    { name: 'nobody-here', id: 1002 },
    { start: 300000, count: 1000 },
  ],
  [{ id: 1002 }, { start: 300000, count: 1000 }],
  [{ name: 'carol', id: 1003 }, undefined],
  [
    { name: 'dave', id: 1004 },
    { start: 700000, count: 10 },
  ],
  [{ name: 'eve', id: 1005 }, undefined],
  [{ name: 'zed', id: 1006 }, undefined],
  [{ name: '#', id: 1007 }, undefined],
];
for (const [user, range] of ranges) t.strictSame(parseSubordinateIds(SUBUID, user), range, `range of ${user.name ?? user.id}`);
t.equal(parseSubordinateIds('', { name: 'alice', id: 1 }), undefined, 'an empty file');

const R = { start: 300000, count: 65536 };
// [facts, kind, uid_map as the kernel prints it]
const mappings: [Parameters<typeof chooseMapping>[0], 'range' | 'single', string, string][] = [
  [{ uid: 1000, gid: 1001, subuid: R, subgid: { start: 400000, count: 10 }, newIdMap: true }, 'range', '0 1000 1\n1 300000 65536', '0 1001 1\n1 400000 10'],
  [{ uid: 1000, gid: 1001, subuid: R, subgid: R, newIdMap: false }, 'single', '0 1000 1', '0 1001 1'],
  [{ uid: 1000, gid: 1001, subuid: R, newIdMap: true }, 'single', '0 1000 1', '0 1001 1'],
  [{ uid: 1000, gid: 1001, subgid: R, newIdMap: true }, 'single', '0 1000 1', '0 1001 1'],
  [{ uid: 1000, gid: 1001, newIdMap: true }, 'single', '0 1000 1', '0 1001 1'],
];
for (const [facts, kind, uidMap, gidMap] of mappings) {
  const mapping = chooseMapping(facts);
  t.equal(mapping.kind, kind, `${JSON.stringify(facts)}: ${kind}`);
  t.equal(formatMap(mapping.uidMap), uidMap);
  t.equal(formatMap(mapping.gidMap), gidMap);
}
t.equal(normaliseMap('         0       1000          1\n         1     300000      65536\n'), '0 1000 1\n1 300000 65536');

t.strictSame(unshareArgs(chooseMapping({ uid: 1000, gid: 1000, newIdMap: true })), ['--user', '--mount', '--propagation', 'slave', '--map-root-user']);
t.strictSame(unshareArgs(chooseMapping({ uid: 1000, gid: 1001, subuid: R, subgid: { start: 9, count: 2 }, newIdMap: true })), [
  '--user',
  '--mount',
  '--propagation',
  'slave',
  '--map-root-user',
  '--map-users=300000,1,65536',
  '--map-groups=9,1,2',
]);

// [map text, id, mapped]
const RANGE_MAP = parseMap('         0       1000          1\n         1     300000      65536\n');
t.strictSame(RANGE_MAP, [
  { inside: 0, outside: 1000, count: 1 },
  { inside: 1, outside: 300000, count: 65536 },
]);
t.strictSame(parseMap('garbage\n1 2\n-1 2 3\n'), []);
const mapped: [number, boolean][] = [
  [0, true],
  [1, true],
  [1000, true],
  [65536, true],
  [65537, false],
  [300000, false],
];
for (const [id, expected] of mapped) t.equal(isMapped(RANGE_MAP, id), expected, `id ${id} in the range map`);
t.equal(isMapped(parseMap('0 1000 1'), 1), false, 'a single map holds 0 only');
t.equal(ownableIds(), undefined, 'the tests run in the initial namespace');
