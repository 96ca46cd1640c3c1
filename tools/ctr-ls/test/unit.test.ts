/** ctr-ls's pure parts, table-driven: filters, the image match, Docker's durations and status words, table rows. */
import t from 'tap';
import type { ListedContainer } from '@conveyor/lib-common/container/targets';
import { imageMatches, matchesFilters, parseFilters } from '../src/filter.js';
import { commandText, containerRow, humanDuration, portsText, statusText } from '../src/table.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;
const base = { type: 'container', v: 1, store: '/s' } as const;
const web: ListedContainer = {
  ...base,
  id: '1'.repeat(64),
  name: 'web',
  status: 'running',
  ref: 'docker.io/library/busybox:latest',
  image: 'docker.io/library/busybox:latest',
  imageDigest: DIGEST,
};
const db: ListedContainer = {
  ...base,
  id: '12'.repeat(32),
  name: 'db',
  status: 'exited',
  exitCode: 0,
  ref: 'localhost:5000/team/app:v1',
  image: 'localhost:5000/team/app:v1',
};
const dead: ListedContainer = { ...base, id: '3'.repeat(64), status: 'dead' };
const all = [web, db, dead];

t.test('filters: keys AND, values of one key OR', async (t) => {
  // [filters, names (dead has none: "-")]
  const cases: [string[], string[]][] = [
    [[], ['web', 'db', '-']],
    [['name=web'], ['web']],
    [['name=^d'], ['db']],
    [['name=e'], ['web']],
    [
      ['name=web', 'name=db'],
      ['web', 'db'],
    ],
    [['name=web', 'status=exited'], []],
    [
      ['status=exited', 'status=dead'],
      ['db', '-'],
    ],
    [['id=1'], ['web', 'db']],
    [['id=12'], ['db']],
    [['id=3333', 'status=dead'], ['-']],
    [['image=busybox'], ['web']],
    [['image=busybox:latest'], ['web']],
    [['image=busybox:1.36'], []],
    [['image=docker.io/library/busybox'], ['web']],
    [['image=localhost:5000/team/app'], ['db']],
    [['image=localhost:5000/team/app:v2'], []],
    [['image=app'], []],
    [[`image=${DIGEST}`], ['web']],
    [['image=abababab'], ['web']],
    [
      ['image=busybox', 'image=localhost:5000/team/app:v1'],
      ['web', 'db'],
    ],
  ];
  for (const [raw, names] of cases) {
    const filters = parseFilters(raw);
    t.strictSame(
      all.filter((c) => matchesFilters(c, filters)).map((c) => c.name ?? '-'),
      names,
      raw.join(' ') || '(none)',
    );
  }
});

t.test('malformed filters are usage errors', async (t) => {
  for (const [raw, message] of [
    ['color=red', /unknown filter "color"/],
    ['status=zombie', /unknown status "zombie"/],
    ['web', /bad filter "web"/],
    ['=web', /bad filter "=web"/],
    ['name=(', /not a regular expression/],
  ] as const) {
    t.throws(() => parseFilters([raw]), { code: 'ERR_USAGE', message }, raw);
  }
});

t.test('imageMatches never matches on nothing', async (t) => {
  t.notOk(imageMatches(web, ''));
  t.notOk(imageMatches(dead, 'busybox'));
  t.notOk(imageMatches(web, 'sha256:'), 'an empty digest prefix');
  t.notOk(imageMatches(web, 'abc'), 'a digest prefix shorter than 6');
});

t.test("Docker's human durations", async (t) => {
  const cases: [number, string][] = [
    [0, 'Less than a second'],
    [999, 'Less than a second'],
    [1000, '1 second'],
    [59_000, '59 seconds'],
    [60_000, 'About a minute'],
    [119_000, 'About a minute'],
    [120_000, '2 minutes'],
    [59 * 60_000, '59 minutes'],
    [60 * 60_000, 'About an hour'],
    [3 * 3_600_000, '3 hours'],
    [47 * 3_600_000, '47 hours'],
    [48 * 3_600_000, '2 days'],
    [15 * 86_400_000, '2 weeks'],
    [70 * 86_400_000, '2 months'],
    [800 * 86_400_000, '2 years'],
  ];
  for (const [ms, text] of cases) t.equal(humanDuration(ms), text, `${ms} ms`);
});

t.test('the STATUS column', async (t) => {
  const now = Date.parse('2026-01-01T00:10:00Z');
  const cases: [Partial<ListedContainer>, string][] = [
    [{ status: 'running', startedAt: '2026-01-01T00:05:00Z' }, 'Up 5 minutes'],
    [{ status: 'running' }, 'Up'],
    [{ status: 'exited', exitCode: 0, finishedAt: '2026-01-01T00:08:00Z' }, 'Exited (0) 2 minutes ago'],
    [{ status: 'exited', exitCode: 137 }, 'Exited (137)'],
    [{ status: 'exited', finishedAt: 'not a date' }, 'Exited (unknown)'],
    [{ status: 'created' }, 'Created'],
    [{ status: 'dead' }, 'Dead'],
  ];
  for (const [fields, text] of cases) t.equal(statusText({ ...base, id: '1'.repeat(64), status: 'running', ...fields } as ListedContainer, now), text, text);
});

t.test('the COMMAND column: quoted, cut at 20 characters unless --no-trunc', async (t) => {
  t.equal(commandText(['sleep', '60']), '"sleep 60"');
  t.equal(commandText(['sh', '-c', 'echo hello world; sleep 1000']), '"sh -c echo hello wo…"');
  t.equal(commandText(['sh', '-c', 'echo hello world; sleep 1000'], true), '"sh -c echo hello world; sleep 1000"');
  t.equal(commandText(['echo', 'a"b']), '"echo a\\"b"', 'quotes escaped');
  t.equal(commandText(undefined), '');
});

t.test('a row: short id, familiar image, names', async (t) => {
  const now = Date.parse('2026-01-01T00:10:00Z');
  t.strictSame(containerRow({ ...web, createdAt: '2026-01-01T00:00:00Z', startedAt: '2026-01-01T00:00:00Z', command: ['sh'] }, now), [
    '111111111111',
    'busybox:latest',
    '"sh"',
    '10 minutes ago',
    'Up 10 minutes',
    '',
    'web',
  ]);
  t.strictSame(containerRow(dead, now), ['333333333333', '', '', '', 'Dead', '', '']);
  t.equal(containerRow(dead, now, true)[0], '3'.repeat(64), '--no-trunc: the full id');
  const digestOnly = { ...dead, status: 'exited', image: DIGEST } as ListedContainer;
  t.equal(containerRow(digestOnly, now)[1], 'abababababab', 'an image known only by digest: its short form');
});

t.test('the PORTS column, as docker ps', async (t) => {
  const p = (hostIP: string, hostPort: number, containerPort: number, protocol: 'tcp' | 'udp' = 'tcp') => ({ hostIP, hostPort, containerPort, protocol });
  t.equal(portsText(undefined), '');
  t.equal(portsText([]), '');
  t.equal(portsText([p('127.0.0.1', 8080, 80)]), '127.0.0.1:8080->80/tcp');
  t.equal(portsText([p('::1', 8080, 80)]), '[::1]:8080->80/tcp');
  t.equal(portsText([p('0.0.0.0', 8001, 81), p('0.0.0.0', 8000, 80)]), '0.0.0.0:8000-8001->80-81/tcp', 'consecutive ports: one range');
  t.equal(portsText([p('0.0.0.0', 9000, 80), p('0.0.0.0', 8000, 81)]), '0.0.0.0:9000->80/tcp, 0.0.0.0:8000->81/tcp', 'not consecutive on the host: two');
  t.equal(portsText([p('127.0.0.1', 5353, 53, 'udp'), p('127.0.0.1', 8080, 80)]), '127.0.0.1:8080->80/tcp, 127.0.0.1:5353->53/udp');
  const now = Date.parse('2026-01-01T00:10:00Z');
  t.equal(containerRow({ ...web, ports: [p('127.0.0.1', 8080, 80)] }, now)[5], '127.0.0.1:8080->80/tcp', 'between STATUS and NAMES');
});
