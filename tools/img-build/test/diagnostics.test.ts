/**
 * What img-build tells about a Dockerfile or .dockerignore it cannot take as
 * given: the parser's warnings (an empty continuation line) on stderr naming
 * the line, as docker build does, and the build still succeeds; a malformed
 * COPY/ADD wildcard is ERR_DOCKERFILE_PARSE naming the Dockerfile line, both
 * before any step runs (a literal pattern) and when the pattern only exists
 * after ARG expansion; a malformed .dockerignore pattern names the
 * .dockerignore, not the Dockerfile. Every build here is FROM scratch, so no
 * image or container is needed.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { contextDir, imgBuild } from './helpers/build.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';

const root = tempStore();
t.teardown(() => removeStore(root));

function failure(result: { logs: Record<string, any>[] }) {
  return result.logs.find((l) => l.level === 'error' && l.tool === 'img-build');
}

t.test('parser warnings reach stderr with the line; the build goes on', async (t) => {
  const context = contextDir(t, { Dockerfile: 'FROM scratch\nENV A=1 \\\n\n  B=2\nLABEL ok=yes\n' });
  const result = await imgBuild(root, ['--log-format=json', '-t', 'warned:1', context]);
  t.equal(result.code, 0, result.stderr);
  const warning = result.logs.find((l) => l.level === 'warn' && /empty continuation line/.test(l.message));
  t.ok(warning, 'an empty continuation line is warned about');
  t.match(warning?.message, /^Dockerfile:2: /, 'naming the instruction line');

  writeFileSync(join(context, 'Dockerfile'), 'FROM scratch\nENV A=1 \\\n  B=2\n');
  const clean = await imgBuild(root, ['--log-format=json', '-t', 'warned:2', context]);
  t.equal(clean.code, 0, clean.stderr);
  t.notOk(
    clean.logs.some((l) => l.level === 'warn' && /continuation/.test(l.message)),
    'no warning without an empty line',
  );
});

t.test('a malformed source pattern names the Dockerfile line', async (t) => {
  const cases: [string, string, number][] = [
    ['a literal pattern, checked before any step', 'FROM scratch\nENV X=1\nCOPY src[ /dest/\n', 3],
    ['ADD too', 'FROM scratch\nADD a.txt \\\n  [z-a /dest/\n', 2],
    ['a pattern made by ARG expansion, checked at its COPY', 'FROM scratch\nARG P=[\nCOPY a$P /dest/\n', 3],
  ];
  for (const [name, dockerfile, line] of cases) {
    const context = contextDir(t, { Dockerfile: dockerfile, 'a.txt': 'a\n' });
    const result = await imgBuild(root, ['--log-format=json', context]);
    t.equal(result.code, 2, `${name}: refused as a parse error`);
    const error = failure(result);
    t.equal(error?.code, 'ERR_DOCKERFILE_PARSE', name);
    t.match(error?.message, new RegExp(`^Dockerfile:${line}: syntax error in pattern`), `${name}: ${error?.message}`);
  }
  // The control case: a well-formed wildcard builds.
  const context = contextDir(t, { Dockerfile: 'FROM scratch\nCOPY [a-c].txt /dest/\n', 'a.txt': 'a\n' });
  const ok = await imgBuild(root, ['-t', 'pattern:ok', context]);
  t.equal(ok.code, 0, ok.stderr);
});

t.test('a malformed .dockerignore pattern names the .dockerignore', async (t) => {
  const context = contextDir(t, { Dockerfile: 'FROM scratch\nCOPY a.txt /a\n', 'a.txt': 'a\n', '.dockerignore': 'ok\nbad[\n' });
  const result = await imgBuild(root, ['--log-format=json', context]);
  t.equal(result.code, 2);
  const error = failure(result);
  t.equal(error?.code, 'ERR_DOCKERFILE_PARSE');
  t.match(error?.message, `${join(context, '.dockerignore')}: syntax error in pattern "bad["`);
  t.notMatch(error?.message, /^Dockerfile/);
});
