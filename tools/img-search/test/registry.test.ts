/**
 * img-search against a real registry (Debian's docker-registry, anonymous):
 * the catalog and a repository's tags over several pages (`n`, `last`,
 * `Link`), term filtering and --limit, --digests (a single manifest's config
 * platform and an index's platforms), an unknown repository, repositories
 * read from stdin (bare, records, pass-through, malformed lines as
 * `stdin:N`, forged names), the table, and the pipeline verbatim:
 * `img-search --tags R | jq -c 'select(.tag|test("^1\\."))' | img-fetch`.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { busyboxLayout } from '../../../test/helpers/fixtures.js';
import { type FaultAction, pushImage, pushIndex, rawManifest, startFaultProxy, startRegistry } from '../../../test/helpers/registry.js';
import { runTool, toolPath } from '../../../test/helpers/tools.js';

const ENV = { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config' };
const search = (args: string[], input?: string) => runTool('img-search', args, { env: ENV, input });
const errorOf = (logs: Record<string, any>[]) => logs.find((l) => l.level === 'error');

/** PUTs a manifest the repository already holds under another tag (cheaper than a push per tag). */
function putManifest(url: string, repo: string, tag: string, body: Buffer, mediaType: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/v2/${repo}/manifests/${tag}`,
      { method: 'PUT', agent: false, headers: { 'content-type': mediaType, 'content-length': String(body.length) } },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const reg = await startRegistry();
t.teardown(() => reg.stop());
const REPOS = ['busybox', 'other/tool', 'team/app', 'team/web'];
for (const repo of REPOS) await pushImage(`${busyboxLayout()}:latest`, reg, `${repo}:latest`);
const manifest = await rawManifest(reg, 'busybox:latest');
const TAGS = ['1.36', '1.37', '2.0', 'latest'];
for (const tag of TAGS.filter((x) => x !== 'latest')) {
  const status = await putManifest(reg.url, 'busybox', tag, manifest.body, manifest.mediaType);
  if (status !== 201) throw new Error(`PUT busybox:${tag}: HTTP ${status}`);
}
const indexDigest = await pushIndex(reg, 'busybox', 'multi', [
  { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size, platform: { os: 'linux', architecture: 'amd64' } },
  { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size, platform: { os: 'unknown', architecture: 'unknown' } },
]);
const catalogGets = () =>
  reg
    .logs()
    .split('\n')
    .filter((l) => l.includes('"GET /v2/_catalog')).length;

t.test('the catalog, two entries a page: every repository, in order, as repository records', async (t) => {
  const before = catalogGets();
  const r = await search([`${reg.host}/`, '--page-size', '2']);
  t.equal(r.code, 0, r.stderr);
  t.strictSame(
    r.records,
    REPOS.map((repo) => ({ type: 'repository', v: 1, name: `${reg.host}/${repo}`, registry: reg.host, repository: repo })),
  );
  t.ok(catalogGets() - before >= 2, 'more than one page was read');
  t.match(reg.logs(), /_catalog\?last=[^ ]*n=2|_catalog\?n=2&last=/, 'the next page was asked with last=');
});

t.test('a term filters the catalog; --registry HOST TERM is the same; --limit stops early', async (t) => {
  const r = await search([`${reg.host}/team`, '--page-size', '1']);
  t.equal(r.code, 0, r.stderr);
  t.strictSame(
    r.records.map((x) => x.name),
    [`${reg.host}/team/app`, `${reg.host}/team/web`],
  );
  const viaFlag = await search(['--registry', reg.host, 'TEAM']);
  t.strictSame(
    viaFlag.records.map((x) => x.repository),
    ['team/app', 'team/web'],
    'case-insensitive',
  );
  const limited = await search([`${reg.host}/`, '--limit', '1', '-q']);
  t.equal(limited.stdout, `${reg.host}/busybox\n`);
  const none = await search([`${reg.host}/nothing-like-this`]);
  t.equal(none.code, 0);
  t.equal(none.stdout, '');
});

t.test('--tags: tag records with a full ref, in the registry order; --limit', async (t) => {
  const r = await search(['--tags', `${reg.host}/busybox`]);
  t.equal(r.code, 0, r.stderr);
  t.strictSame(r.records.map((x) => x.tag).sort(), ['1.36', '1.37', '2.0', 'latest', 'multi']);
  t.strictSame(
    r.records.find((x) => x.tag === '1.36'),
    { type: 'tag', v: 1, ref: `${reg.host}/busybox:1.36`, name: `${reg.host}/busybox`, tag: '1.36', registry: reg.host, repository: 'busybox' },
  );
  const limited = await search(['--tags', `${reg.host}/busybox`, '--limit', '2', '-q']);
  t.equal(
    limited.stdout,
    r.records
      .slice(0, 2)
      .map((x) => `${x.ref}\n`)
      .join(''),
  );
});

t.test('--tags over several pages (distribution 2.8 serves one page: a proxy pages its real list)', async (t) => {
  const all = (await search(['--tags', `${reg.host}/busybox`])).records.map((x) => x.tag as string);
  const proxy = await startFaultProxy(reg.url, (req) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname !== '/v2/busybox/tags/list') return { kind: 'pass' };
    const n = Number(url.searchParams.get('n'));
    const last = url.searchParams.get('last');
    const start = last === null ? 0 : all.indexOf(last) + 1;
    const tags = all.slice(start, start + n);
    const more = start + n < all.length;
    const headers: Record<string, string> = more ? { link: `</v2/busybox/tags/list?last=${tags[tags.length - 1]}&n=${n}>; rel="next"` } : {};
    return { kind: 'status', status: 200, headers, body: JSON.stringify({ name: 'busybox', tags }) };
  });
  t.teardown(() => proxy.stop());
  const r = await search(['--tags', `${proxy.host}/busybox`, '--page-size', '2']);
  t.equal(r.code, 0, r.stderr);
  t.strictSame(
    r.records.map((x) => x.tag),
    all,
  );
  t.equal(proxy.requests.filter((q) => q.url.includes('/tags/list')).length, 3, 'three pages of two');
});

t.test('--digests: the digest the tag points at, and its platforms', async (t) => {
  const r = await search(['--tags', '--digests', `${reg.host}/busybox`]);
  t.equal(r.code, 0, r.stderr);
  const byTag = Object.fromEntries(r.records.map((x) => [x.tag, x]));
  t.equal(byTag['1.36'].digest, manifest.digest);
  t.equal(byTag['1.36'].mediaType, manifest.mediaType);
  t.strictSame(byTag['1.36'].platforms, [{ os: 'linux', architecture: 'amd64' }], "a single manifest's platform comes from its config");
  t.equal(byTag.multi.digest, indexDigest);
  t.strictSame(
    byTag.multi.platforms,
    [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
    ],
    "an index's platforms, without unknown/unknown",
  );
  const plain = await search(['--tags', `${reg.host}/busybox`]);
  t.strictSame(
    r.records.map((x) => x.tag),
    plain.records.map((x) => x.tag),
    'in the registry order',
  );
});

t.test('an unknown repository: ERR_REGISTRY_NOT_FOUND, exit 1', async (t) => {
  const r = await search(['--log-format=json', '--tags', `${reg.host}/no/such`]);
  t.equal(r.code, 1);
  t.equal(errorOf(r.logs)?.code, 'ERR_REGISTRY_NOT_FOUND');
  t.equal(r.stdout, '');
});

t.test('repositories from stdin: bare names and records; other records pass through', async (t) => {
  const input = [
    `${reg.host}/team/app`,
    JSON.stringify({ type: 'repository', v: 1, name: `${reg.host}/team/web` }),
    JSON.stringify({ type: 'container', v: 1, id: 'x' }),
    '',
  ].join('\n');
  const r = await search(['--tags'], input);
  t.equal(r.code, 0, r.stderr);
  t.strictSame(
    r.records.map((x) => x.ref ?? x.type),
    [`${reg.host}/team/app:latest`, `${reg.host}/team/web:latest`, 'container'],
  );
  const chained = await search(['--tags', '-q'], (await search([`${reg.host}/team`])).stdout);
  t.equal(chained.stdout, `${reg.host}/team/app:latest\n${reg.host}/team/web:latest\n`, 'img-search REGISTRY/ | img-search --tags');
});

t.test('bad input: malformed JSON is stdin:N, a forged name is refused, unknown flags exit 2', async (t) => {
  const bad = await search(['--tags', '--log-format=json'], `${reg.host}/team/app\n{"type":"repository",\n`);
  t.equal(bad.code, 2);
  t.equal(errorOf(bad.logs)?.code, 'ERR_INPUT_JSON');
  t.match(errorOf(bad.logs)?.message, /^stdin:2/);
  t.equal(bad.records.length, 1, 'the first repository was listed before the bad line');
  // One forged record through the tool; the other forgeries are unit.test.ts's readRepositories cases.
  const forged = await search(['--tags', '--log-format=json'], `${JSON.stringify({ type: 'repository', name: '../../etc/passwd' })}\n`);
  t.equal(forged.code, 2);
  t.equal(errorOf(forged.logs)?.code, 'ERR_INPUT_RECORD');
  t.match(errorOf(forged.logs)?.message, /^stdin:1: /);
  t.equal(forged.stdout, '');
  for (const args of [
    ['--frobnicate', 'x'],
    ['--digests', 'nginx'],
    ['--filter', 'stars=3', `${reg.host}/`],
  ]) {
    const r = await search(['--log-format=json', ...args]);
    t.equal(r.code, 2, args.join(' '));
    t.equal(errorOf(r.logs)?.code, 'ERR_USAGE', args.join(' '));
  }
});

t.test('--table prints the tags with digests and platforms', async (t) => {
  const r = await search(['--table', '--tags', '--digests', `${reg.host}/busybox`]);
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  t.match(lines[0], /^NAME\s+TAG\s+DIGEST\s+PLATFORMS$/);
  t.equal(lines.length, 6);
  t.match(
    lines.find((l) => / multi /.test(l)),
    new RegExp(`^${reg.host}/busybox\\s+multi\\s+${indexDigest.slice(0, 19)}\\s+linux/amd64,linux/arm64/v8$`),
  );
});

t.test("the issue's pipeline, verbatim: img-search --tags | jq select | img-fetch", async (t) => {
  const root = t.testdir();
  const pipeline = `node ${toolPath('img-search')} --tags ${reg.host}/busybox | jq -c 'select(.tag|test("^1\\\\."))' | node ${toolPath('img-fetch')} --root ${join(root, 'store')} --no-layers`;
  const out = execFileSync('bash', ['-o', 'pipefail', '-c', pipeline], { env: ENV, encoding: 'utf8' });
  const images = out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.strictSame(images.map((i) => [i.type, i.ref]).sort(), [
    ['image', `${reg.host}/busybox:1.36`],
    ['image', `${reg.host}/busybox:1.37`],
  ]);
  t.equal(images[0].digest, manifest.digest);
  // The brief's `img-search nginx | head -1 | img-fetch`, with a catalog instead of Docker Hub.
  const first = `node ${toolPath('img-search')} ${reg.host}/busy | head -1 | node ${toolPath('img-fetch')} --root ${join(root, 'store')} --no-layers`;
  const pulled = JSON.parse(execFileSync('bash', ['-o', 'pipefail', '-c', first], { env: ENV, encoding: 'utf8' }));
  t.equal(pulled.ref, `${reg.host}/busybox:latest`, 'a repository record pulls its latest tag');
});

t.test('a registry that lies about pages or drops the connection', async (t) => {
  const page = (link: string) => ({
    kind: 'status' as const,
    status: 200,
    headers: { link },
    body: JSON.stringify({ repositories: ['busybox'] }),
  });
  // A loop and a page that is not JSON through the tool; foreign links and bad entries are unit.test.ts's.
  const cases: [string, () => FaultAction][] = [
    ['a next link that loops', () => page('</v2/_catalog?last=busybox&n=100>; rel="next"')],
    ['a page that is not JSON', () => ({ kind: 'status', status: 200, body: '<html>' })],
  ];
  for (const [why, rule] of cases) {
    const proxy = await startFaultProxy(reg.url, (req) => (req.url.startsWith('/v2/_catalog') ? rule() : { kind: 'pass' }));
    const r = await search([`${proxy.host}/`, '--log-format=json']);
    await proxy.stop();
    t.equal(r.code, 1, why);
    t.equal(errorOf(r.logs)?.code, 'ERR_REGISTRY_PROTOCOL', why);
    t.ok(proxy.requests.filter((q) => q.url.startsWith('/v2/_catalog')).length <= 2, `${why}: stopped early`);
  }
  // Endless distinct pages: capped by the page limit instead of running forever.
  let pages = 0;
  const endless = await startFaultProxy(reg.url, (req) =>
    req.url.startsWith('/v2/_catalog') ? page(`</v2/_catalog?last=x${++pages}&n=1>; rel="next"`) : { kind: 'pass' },
  );
  t.teardown(() => endless.stop());
  const r = await search([`${endless.host}/`, '--log-format=json', '--limit', '5']);
  t.equal(r.code, 0, '--limit ends an endless listing early');
  t.equal(r.records.length, 5);
  const hostileNames = await startFaultProxy(reg.url, (req) =>
    req.url.startsWith('/v2/_catalog')
      ? { kind: 'status', status: 200, body: JSON.stringify({ repositories: ['ok/one', '../../etc', 'UP', 'ok/two'] }) }
      : { kind: 'pass' },
  );
  t.teardown(() => hostileNames.stop());
  const named = await search([`${hostileNames.host}/`, '--log-format=json']);
  t.equal(named.code, 0);
  t.strictSame(
    named.records.map((x) => x.repository),
    ['ok/one', 'ok/two'],
    'malformed names skipped',
  );
  t.equal(named.logs.filter((l) => l.level === 'warn').length, 2, 'each with a warning');
  // The connection dropped twice mid-page: retried, then the listing completes.
  const cut = await startFaultProxy(reg.url, (req, n) => (req.url.startsWith('/v2/_catalog') && n < 2 ? { kind: 'cut', bytes: 5 } : { kind: 'pass' }));
  t.teardown(() => cut.stop());
  const retried = await search([`${cut.host}/`]);
  t.equal(retried.code, 0, retried.stderr);
  t.equal(retried.records.length, REPOS.length);
});
