// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Dockerfile ${VAR} syntax is what these strings hold
/**
 * Hostile input, generated: random Dockerfile-shaped text (seeded, so a failure
 * replays) through parseDockerfile, splitStages and resolveStep, and random
 * patterns through globMatch and the ignore matcher. Whatever the input, the
 * front end either answers or throws ERR_DOCKERFILE_PARSE naming where; never a
 * TypeError, a RangeError (stack) or a hang.
 */
import t from 'tap';
import { isConveyorError } from '@conveyor/lib-common/errors';
import { parseDockerfile } from '../src/dockerfile/parse.js';
import { resolveStep } from '../src/dockerfile/resolve.js';
import { splitStages } from '../src/dockerfile/stages.js';
import { createIgnoreMatcher, globMatch } from '../src/patterns.js';

/** mulberry32: a small seeded generator, so every run sees the same inputs. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const KEYWORDS = [
  'FROM',
  'RUN',
  'COPY',
  'ADD',
  'ENV',
  'ARG',
  'LABEL',
  'WORKDIR',
  'USER',
  'CMD',
  'ENTRYPOINT',
  'EXPOSE',
  'VOLUME',
  'STOPSIGNAL',
  'SHELL',
  'HEALTHCHECK',
  'ONBUILD',
  'MAINTAINER',
  'from',
  'Run',
];
const PIECES = [
  '$',
  '${',
  '}',
  ':',
  '-',
  '+',
  '?',
  '#',
  '%',
  '/',
  '//',
  '\\',
  '`',
  "'",
  '"',
  '<<',
  '<<-',
  'EOF',
  "'EOF'",
  '[',
  ']',
  '"a"',
  ',',
  '=',
  '--',
  '--from=',
  '--chown=',
  '--link',
  '--mount=x',
  '--interval=',
  '5s',
  '*',
  '**',
  '!',
  ' ',
  '  ',
  '\t',
  '\\\n',
  'a',
  'B',
  'CMD',
  'NONE',
  'AS',
  'x y',
  '\u00e9',
  '\u{1F600}',
  '\u0000',
  '${A:-${B:+c}}',
  '${#A}',
  '${A%%*/}',
  '${A/x/y}',
];

function dockerfileText(next: () => number): string {
  const lines: string[] = [];
  if (next() < 0.2) lines.push(next() < 0.5 ? '# escape=`' : '# syntax=x');
  const count = 1 + Math.floor(next() * 12);
  for (let i = 0; i < count; i++) {
    const keyword = i === 0 && next() < 0.8 ? 'FROM' : KEYWORDS[Math.floor(next() * KEYWORDS.length)];
    let line = `${keyword} `;
    const words = Math.floor(next() * 8);
    for (let w = 0; w < words; w++) line += (next() < 0.6 ? ' ' : '') + PIECES[Math.floor(next() * PIECES.length)];
    const heredoc = /^(RUN|COPY|ADD)$/.test(keyword) && next() < 0.3;
    if (heredoc) line += next() < 0.5 ? ' <<EOF /x' : " <<-'EOF' /x";
    lines.push(line);
    // Close the heredoc, so instructions after it are reached too.
    if (heredoc) lines.push(next() < 0.5 ? 'body $A ${A%/*}' : '\tx', next() < 0.5 ? 'EOF' : '\tEOF');
  }
  return lines.join(next() < 0.9 ? '\n' : '\r\n');
}

function expectParseErrorOrNothing(t: Tap.Test, action: () => unknown, what: string): boolean {
  try {
    action();
    return true;
  } catch (error) {
    if (isConveyorError(error) && error.code === 'ERR_DOCKERFILE_PARSE') return false;
    t.fail(`${what}: ${(error as Error)?.stack ?? error}`);
    return false;
  }
}

t.test('random Dockerfiles: an answer or ERR_DOCKERFILE_PARSE, nothing else', async (t) => {
  const next = random(12);
  const lookup = (name: string) => (name === 'A' ? 'a/b/c' : name === 'E' ? '' : undefined);
  let parsed = 0;
  let resolved = 0;
  for (let i = 0; i < 3000; i++) {
    const text = dockerfileText(next);
    let dockerfile: ReturnType<typeof parseDockerfile> | undefined;
    if (!expectParseErrorOrNothing(t, () => (dockerfile = parseDockerfile(text)), JSON.stringify(text)) || !dockerfile) continue;
    parsed++;
    const parsedFile = dockerfile;
    expectParseErrorOrNothing(t, () => splitStages(parsedFile), JSON.stringify(text));
    for (const instruction of parsedFile.instructions) {
      if (expectParseErrorOrNothing(t, () => resolveStep(instruction, lookup, parsedFile.directives.escape), JSON.stringify(instruction.original))) resolved++;
    }
  }
  // The generator must reach past the parser, or this test proves nothing.
  t.ok(parsed > 1000, `${parsed} of 3000 parsed`);
  t.ok(resolved > 3000, `${resolved} instructions resolved`);
});

t.test('random patterns and paths: a boolean or ERR_DOCKERFILE_PARSE', async (t) => {
  const next = random(34);
  const alphabet = ['*', '**', '?', '[', ']', '^', '-', '\\', '/', 'a', 'b', '.', '!', 'é'];
  const pick = (n: number) => Array.from({ length: n }, () => alphabet[Math.floor(next() * alphabet.length)]).join('');
  let answered = 0;
  for (let i = 0; i < 5000; i++) {
    const pattern = pick(1 + Math.floor(next() * 10));
    const path = pick(Math.floor(next() * 12)).replace(/[*?[\]\\!^]/g, '');
    if (expectParseErrorOrNothing(t, () => globMatch(pattern, path), `globMatch(${JSON.stringify(pattern)}, ${JSON.stringify(path)})`)) answered++;
    expectParseErrorOrNothing(
      t,
      () => {
        const matcher = createIgnoreMatcher([pattern, `!${pick(4)}`]);
        matcher.ignores(path);
        matcher.mayIncludeUnder(path || '.');
      },
      `ignore ${JSON.stringify(pattern)} vs ${JSON.stringify(path)}`,
    );
  }
  t.ok(answered > 1000, `${answered} of 5000 patterns answered`);
});
