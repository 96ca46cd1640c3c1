/**
 * img-search against Docker Hub's search API. index.docker.io cannot be
 * reached from here, so a local server answers GET /v1/search with Hub's
 * exact response shape ({num_pages, num_results, results: [{name,
 * description, star_count, is_official, is_automated}], page_size, query,
 * page}): records, --limit as `n`, the filters, the table, CONVEYOR_INDEX_URL,
 * and an index that lies (not JSON, no results, 404, hostile text).
 */
import t from 'tap';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runTool } from '../../../test/helpers/tools.js';

const RESULTS = [
  { star_count: 20512, is_official: true, name: 'nginx', is_automated: false, description: 'Official build of Nginx.' },
  {
    star_count: 180,
    is_official: false,
    name: 'bitnami/nginx',
    is_automated: true,
    description: 'Bitnami container image for NGINX, a very long description that goes on',
  },
  { star_count: 3, is_official: false, name: 'someone/nginx-proxy', is_automated: false, description: 'evil\u001b[2Jdescription\nwith a newline' },
  { star_count: 99, is_official: false, name: '../../not a name', is_automated: false, description: 'a name img-fetch could not pull' },
];

const requests: IncomingMessage[] = [];
let answer: (url: URL) => { status: number; body: string } = (url) => {
  const n = Number(url.searchParams.get('n') ?? 25);
  const results = RESULTS.slice(0, n);
  return {
    status: 200,
    body: JSON.stringify({ num_pages: 1, num_results: results.length, results, page_size: n, query: url.searchParams.get('q'), page: 1 }),
  };
};
const server = createServer((req, res) => {
  requests.push(req);
  const url = new URL(req.url ?? '/', 'http://x');
  const { status, body } = url.pathname === '/v1/search' ? answer(url) : { status: 404, body: '{"errors":[{"code":"NOT_FOUND"}]}' };
  res.writeHead(status, { 'content-type': 'application/json' }).end(body);
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
const INDEX = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/`;
const ENV = { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config' };
const search = (args: string[], env: NodeJS.ProcessEnv = {}) => runTool('img-search', args, { env: { ...ENV, ...env } });
const errorOf = (logs: Record<string, any>[]) => logs.find((l) => l.level === 'error');

t.test('results become repository records; malformed names are skipped', async (t) => {
  const r = await search(['--index-url', INDEX, 'nginx']);
  t.equal(r.code, 0, r.stderr);
  t.strictSame(r.records[0], {
    type: 'repository',
    v: 1,
    name: 'nginx',
    registry: 'docker.io',
    repository: 'library/nginx',
    description: 'Official build of Nginx.',
    stars: 20512,
    official: true,
    automated: false,
  });
  t.strictSame(
    r.records.map((x) => x.repository),
    ['library/nginx', 'bitnami/nginx', 'someone/nginx-proxy'],
  );
  const last = requests[requests.length - 1];
  t.equal(last.url, '/v1/search?q=nginx&n=25', "docker search's default limit, 25");
  t.equal(last.headers.authorization, undefined, 'searched anonymously');
});

t.test('--limit is sent as n; CONVEYOR_INDEX_URL names the index; docker.io/TERM is a Hub search', async (t) => {
  const r = await search(['--limit', '2', 'docker.io/nginx'], { CONVEYOR_INDEX_URL: INDEX });
  t.equal(r.code, 0, r.stderr);
  t.equal(requests[requests.length - 1].url, '/v1/search?q=nginx&n=2');
  t.equal(r.records.length, 2);
});

t.test('filters, as docker search --filter', async (t) => {
  // Two combinations through the tool; unit.test.ts has the rest of the filter table.
  const cases: [string[], string[]][] = [
    [['--filter', 'is-official=true'], ['nginx']],
    [['-f', 'stars=100', '--filter', 'is-automated=true'], ['bitnami/nginx']],
  ];
  for (const [flags, names] of cases) {
    const r = await search(['--index-url', INDEX, ...flags, 'nginx', '-q']);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout, names.map((n) => `${n}\n`).join(''), flags.join(' '));
  }
});

t.test('the table: docker search columns, descriptions cut and made printable', async (t) => {
  const r = await search(['--index-url', INDEX, '--table', 'nginx']);
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  t.match(lines[0], /^NAME\s+DESCRIPTION\s+STARS\s+OFFICIAL$/);
  t.match(lines[1], /^nginx\s+Official build of Nginx\.\s+20512\s+\[OK\]$/);
  t.match(lines[2], /^bitnami\/nginx\s+Bitnami container image for NGINX, a very lo…\s+180$/);
  t.notOk(r.stdout.includes('\u001b'), 'no escape sequence reaches the terminal');
  t.match(lines[3], /evil\?\[2Jdescription with a newline/);
  const full = await search(['--index-url', INDEX, '--table', '--no-trunc', 'nginx']);
  t.match(full.stdout, /a very long description that goes on/);
});

t.test('an index that lies or fails', async (t) => {
  const cases: [{ status: number; body: string }, string][] = [
    [{ status: 200, body: 'not json' }, 'ERR_REGISTRY_PROTOCOL'],
    [{ status: 200, body: '{"num_results":1}' }, 'ERR_REGISTRY_PROTOCOL'],
    [{ status: 401, body: '' }, 'ERR_REGISTRY_UNAUTHORIZED'],
  ];
  const saved = answer;
  t.teardown(() => {
    answer = saved;
  });
  for (const [reply, code] of cases) {
    answer = () => reply;
    const r = await search(['--index-url', INDEX, '--log-format=json', 'nginx']);
    t.equal(r.code, 1, reply.body);
    t.equal(errorOf(r.logs)?.code, code, reply.body);
    t.equal(r.stdout, '');
  }
  answer = () => ({ status: 200, body: JSON.stringify({ results: [null, 7, { name: 'ok/name', star_count: 'many', is_official: 'yes' }] }) });
  const r = await search(['--index-url', INDEX, 'x']);
  t.equal(r.code, 0, r.stderr);
  t.strictSame(
    r.records.map((x) => [x.name, x.stars, x.official]),
    [['ok/name', 0, false]],
    'wrong types are defaults, not trusted',
  );
});

t.test('usage: a bad index URL, --limit over 100', async (t) => {
  for (const args of [
    ['--index-url', 'ftp://x/', 'nginx'],
    ['--limit', '101', 'nginx'],
  ]) {
    const r = await search(['--log-format=json', ...args]);
    t.equal(r.code, 2, args.join(' '));
    t.equal(errorOf(r.logs)?.code, 'ERR_USAGE', args.join(' '));
  }
});
