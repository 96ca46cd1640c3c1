/**
 * img-search's pure parts, table-driven: what the arguments ask for, the
 * filters, the Link header's next page (and the links a hostile registry may
 * send), page and Hub answer parsing, name and tag checks, term matching, and
 * the ordered concurrency of --digests.
 */
import t from 'tap';
import { isRepositoryName, isTagName, nextPageLink, pageEntries, parseHubSearch } from '@conveyor/registry/catalog';
import { mapOrdered, matchesTerm, take } from '../src/search.js';
import { Readable } from 'node:stream';
import { readRepositories } from '../src/input.js';
import { indexUrl, parseFilters, passes, searchTarget, tagsRepository } from '../src/target.js';
import { shortDescription } from '../src/table.js';

t.test('searchTarget', async (t) => {
  const cases: [string | undefined, string | undefined, unknown][] = [
    ['nginx', undefined, { kind: 'hub', term: 'nginx' }],
    ['bitnami/nginx', undefined, { kind: 'hub', term: 'bitnami/nginx' }],
    ['docker.io/nginx', undefined, { kind: 'hub', term: 'nginx' }],
    ['index.docker.io/nginx', undefined, { kind: 'hub', term: 'nginx' }],
    ['localhost:5000/', undefined, { kind: 'catalog', registry: 'localhost:5000', term: '' }],
    ['localhost/team', undefined, { kind: 'catalog', registry: 'localhost', term: 'team' }],
    ['registry.example.com/team/app', undefined, { kind: 'catalog', registry: 'registry.example.com', term: 'team/app' }],
    ['team', 'registry.example.com', { kind: 'catalog', registry: 'registry.example.com', term: 'team' }],
    [undefined, '127.0.0.1:5000', { kind: 'catalog', registry: '127.0.0.1:5000', term: '' }],
    ['nginx', 'docker.io', { kind: 'hub', term: 'nginx' }],
  ];
  for (const [term, registry, expected] of cases) t.strictSame(searchTarget(term, registry), expected, `${term} ${registry}`);
  for (const [term, registry] of [
    [undefined, undefined],
    ['', undefined],
    ['docker.io/', undefined],
    [undefined, 'docker.io'],
    ['x', 'bad host!'],
    ['x', 'a/b'],
  ]) {
    t.throws(() => searchTarget(term, registry), { code: 'ERR_USAGE' }, `${term} ${registry}`);
  }
});

t.test('tagsRepository', async (t) => {
  t.strictSame(tagsRepository('busybox'), { registry: 'docker.io', repository: 'library/busybox' });
  t.strictSame(tagsRepository('localhost:5000/team/app'), { registry: 'localhost:5000', repository: 'team/app' });
  t.throws(() => tagsRepository('busybox:1.36'), { code: 'ERR_USAGE' });
  t.throws(() => tagsRepository(`busybox@sha256:${'a'.repeat(64)}`), { code: 'ERR_USAGE' });
  t.throws(() => tagsRepository('Not/Valid'), { code: 'ERR_REF_INVALID' });
});

t.test('parseFilters and passes', async (t) => {
  t.strictSame(parseFilters([]), {});
  t.strictSame(parseFilters(['stars=3', 'is-official=true', 'is-automated=false']), { minStars: 3, official: true, automated: false });
  for (const bad of ['stars', 'stars=-1', 'stars=1.5', 'is-official=yes', 'color=red', '']) t.throws(() => parseFilters([bad]), { code: 'ERR_USAGE' }, bad);
  const r = { stars: 10, official: false, automated: true };
  const cases: [object, boolean][] = [
    [{}, true],
    [{ minStars: 10 }, true],
    [{ minStars: 11 }, false],
    [{ official: true }, false],
    [{ official: false, automated: true }, true],
    [{ automated: false }, false],
  ];
  for (const [filters, expected] of cases) t.equal(passes(r, filters), expected, JSON.stringify(filters));
});

t.test('nextPageLink', async (t) => {
  const at = '/v2/_catalog?n=2';
  const ok: [string | undefined, string | undefined][] = [
    [undefined, undefined],
    ['', undefined],
    ['</v2/_catalog?last=b&n=2>; rel="next"', '/v2/_catalog?last=b&n=2'],
    ['</v2/_catalog?n=2&last=b>; rel=next', '/v2/_catalog?n=2&last=b'],
    ['<http://registry.invalid/v2/_catalog?last=b>; rel="next"', '/v2/_catalog?last=b'],
    ['<https://registry.invalid/v2/_catalog?last=b>; rel="next"', '/v2/_catalog?last=b'],
    ['</v2/_catalog?last=a>; rel="prev", </v2/_catalog?last=c>; rel="next"', '/v2/_catalog?last=c'],
    ['</v2/_catalog?last=a>; rel="prev"', undefined],
    ['garbage', undefined],
  ];
  for (const [header, expected] of ok) t.equal(nextPageLink(header, at, '/v2/_catalog'), expected, String(header));
  const hostile = [
    '<https://evil.example/v2/_catalog?last=b>; rel="next"',
    '</v2/library/x/tags/list>; rel="next"',
    '</v2/_catalog/../x>; rel="next"',
    '<//evil.example/v2/_catalog>; rel="next"',
  ];
  for (const header of hostile) t.throws(() => nextPageLink(header, at, '/v2/_catalog'), { code: 'ERR_REGISTRY_PROTOCOL' }, header);
  // Absolute links naming the registry itself are followed; another port is another host.
  t.equal(nextPageLink('<https://reg.example:5000/v2/_catalog?last=b>; rel="next"', at, '/v2/_catalog', 'reg.example:5000'), '/v2/_catalog?last=b');
  t.throws(() => nextPageLink('<https://reg.example:5001/v2/_catalog>; rel="next"', at, '/v2/_catalog', 'reg.example:5000'), { code: 'ERR_REGISTRY_PROTOCOL' });
  t.throws(() => nextPageLink('<ftp://reg.example:5000/v2/_catalog>; rel="next"', at, '/v2/_catalog', 'reg.example:5000'), { code: 'ERR_REGISTRY_PROTOCOL' });
});

t.test('pageEntries', async (t) => {
  const b = (s: string) => Buffer.from(s);
  t.strictSame(pageEntries(b('{"repositories":["a","b"]}'), 'repositories', 'x'), ['a', 'b']);
  t.strictSame(pageEntries(b('{"name":"a","tags":null}'), 'tags', 'x'), []);
  t.strictSame(pageEntries(b('{}'), 'tags', 'x'), []);
  for (const bad of ['nope', '[]', '"s"', '{"tags":"a"}', '{"tags":[1]}', '{"tags":[{"a":1}]}']) {
    t.throws(() => pageEntries(b(bad), 'tags', 'x'), { code: 'ERR_REGISTRY_PROTOCOL' }, bad);
  }
});

t.test('parseHubSearch', async (t) => {
  const body = Buffer.from(
    JSON.stringify({
      num_pages: 1,
      num_results: 2,
      results: [{ name: 'nginx', description: 'd', star_count: 5, is_official: true, is_automated: false }, { name: 'UPPER', star_count: 1 }, { name: 'a/b' }],
      page_size: 25,
      query: 'x',
      page: 1,
    }),
  );
  t.strictSame(parseHubSearch(body, 'x'), [
    { name: 'nginx', description: 'd', stars: 5, official: true, automated: false },
    { name: 'a/b', description: '', stars: 0, official: false, automated: false },
  ]);
  t.throws(() => parseHubSearch(Buffer.from('{}'), 'x'), { code: 'ERR_REGISTRY_PROTOCOL' });
});

t.test('names, tags and terms', async (t) => {
  const names: [string, boolean][] = [
    ['busybox', true],
    ['team/app', true],
    ['a.b_c__d-e/f', true],
    ['', false],
    ['../x', false],
    ['a//b', false],
    ['Upper', false],
    ['a/', false],
    ['x'.repeat(256), false],
  ];
  for (const [name, ok] of names) t.equal(isRepositoryName(name), ok, name);
  const tags: [string, boolean][] = [
    ['latest', true],
    ['1.36.1', true],
    ['_x', true],
    ['.x', false],
    ['-x', false],
    ['a/b', false],
    ['x'.repeat(129), false],
  ];
  for (const [tag, ok] of tags) t.equal(isTagName(tag), ok, tag);
  t.ok(matchesTerm('team/app', ''));
  t.ok(matchesTerm('team/app', 'APP'));
  t.notOk(matchesTerm('team/app', 'web'));
});

t.test('shortDescription', async (t) => {
  t.equal(shortDescription(undefined, true), '');
  t.equal(shortDescription(' a\n\tb ', true), 'a b');
  t.equal(shortDescription('x'.repeat(50), true), `${'x'.repeat(44)}…`);
  t.equal(shortDescription('x'.repeat(50), false), 'x'.repeat(50));
  t.equal(shortDescription('\u001b[31mred', true), '?[31mred');
});

t.test('take and mapOrdered', async (t) => {
  async function* count(n: number) {
    for (let i = 0; i < n; i++) yield i;
  }
  const all = async <T>(source: AsyncIterable<T>) => {
    const out: T[] = [];
    for await (const x of source) out.push(x);
    return out;
  };
  t.strictSame(await all(take(count(5), undefined)), [0, 1, 2, 3, 4]);
  t.strictSame(await all(take(count(5), 2)), [0, 1]);
  t.strictSame(await all(take(count(5), 0)), []);
  let inFlight = 0;
  let most = 0;
  // Later items finish first: the order must still be the source's.
  const slowFirst = async (i: number) => {
    inFlight++;
    most = Math.max(most, inFlight);
    await new Promise((resolve) => setTimeout(resolve, (10 - i) * 2));
    inFlight--;
    return i * 10;
  };
  t.strictSame(await all(mapOrdered(count(10), 3, slowFirst)), [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
  t.ok(most <= 3 && most >= 2, `at most 3 in flight (${most})`);
});

t.test('readRepositories: names and records in, forged ones refused with stdin:N', async (t) => {
  const read = async (text: string) => {
    const out: unknown[] = [];
    for await (const item of readRepositories(Readable.from([Buffer.from(text)]))) out.push(item);
    return out;
  };
  t.strictSame(await read('busybox\n\n{"type":"repository","name":"localhost:5000/a/b"}\n{"name":"x.io/c"}\n{"type":"image","ref":"r"}\n'), [
    { kind: 'repository', repo: { registry: 'docker.io', repository: 'library/busybox' }, where: 'stdin:1' },
    { kind: 'repository', repo: { registry: 'localhost:5000', repository: 'a/b' }, where: 'stdin:3' },
    { kind: 'repository', repo: { registry: 'x.io', repository: 'c' }, where: 'stdin:4' },
    { kind: 'passthrough', record: { type: 'image', ref: 'r' } },
  ]);
  const forged: [string, string][] = [
    [JSON.stringify({ type: 'repository', name: '../../etc/passwd' }), 'a path'],
    [JSON.stringify({ type: 'repository', name: 'localhost:5000/team/app:latest' }), 'a tag, not a repository'],
    [JSON.stringify({ type: 'repository', name: `busybox@sha256:${'a'.repeat(64)}` }), 'a digest'],
    [JSON.stringify({ type: 'repository', name: 42 }), 'a name that is not a string'],
    [JSON.stringify({ type: 'repository' }), 'no name'],
    [JSON.stringify({ name: '' }), 'an empty name'],
    ['UPPER/Case', 'a bare name that is not a repository'],
  ];
  for (const [line, why] of forged) await t.rejects(read(`busybox\n${line}\n`), { code: 'ERR_INPUT_RECORD', message: /^stdin:2: / }, why);
  await t.rejects(read('busybox\n{"type":\n'), { code: 'ERR_INPUT_JSON', message: /^stdin:2: / }, 'malformed JSON');
  await t.rejects(read('[1]\n'), { code: 'ERR_INPUT_JSON', message: /^stdin:1: / }, 'not an object');
});

t.test('indexUrl', async (t) => {
  t.equal(indexUrl(undefined).href, 'https://index.docker.io/v1/');
  t.equal(indexUrl('').host, 'index.docker.io');
  t.equal(indexUrl('http://127.0.0.1:8080/v1/').host, '127.0.0.1:8080');
  for (const bad of ['ftp://x/', 'not a url', 'file:///etc/passwd']) t.throws(() => indexUrl(bad), { code: 'ERR_USAGE' }, bad);
});
