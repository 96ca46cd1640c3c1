// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Dockerfile ${VAR} syntax is what these strings test
/**
 * expandWord/expandWords against buildkit's shell/lex_test.go (TestProcessWithMatches,
 * TestShellParserMandatoryEnvVars) and the POSIX rules it follows; plus the
 * extension ${#VAR} and the caps that keep a hostile word cheap.
 */
import t from 'tap';
import { expandWord, expandWords, MAX_SUBSTITUTION_DEPTH } from '../src/dockerfile/expand.js';

const from = (env: Record<string, string>) => (name: string) => (Object.hasOwn(env, name) ? env[name] : undefined);

// [input, variables, expected result or Error for "must fail"]
const words: [string, Record<string, string>, string | typeof Error][] = [
  // lex_test.go TestProcessWithMatches
  ['x', { DUMMY: 'dummy' }, 'x'],
  ['x ${UNUSED}', { DUMMY: 'dummy' }, 'x '],
  ['x ${FOO}', { FOO: 'y' }, 'x y'],
  ['${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}', { FOO: 'xxx', BAR: '' }, 'xxx  ccc'],
  ['${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}', { FOO: 'xxx', BAR: '' }, 'xxx bbb ccc'],
  ['${FOO:-}', { FOO: 'xxx', BAR: '' }, 'xxx'],
  ['${FOO:-}', {}, ''],
  ['${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}', { FOO: 'xxx', BAR: '' }, 'aaa bbb '],
  ['${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}', { FOO: 'xxx', BAR: '' }, 'aaa  '],
  ['${FOO?aaa}', { FOO: 'xxx', BAR: '' }, 'xxx'],
  ['${BAR?bbb}', { FOO: 'xxx', BAR: '' }, ''],
  ['${BAZ?ccc}', { FOO: 'xxx', BAR: '' }, Error],
  ['${FOO:?aaa}', { FOO: 'xxx', BAR: '' }, 'xxx'],
  ['${BAR:?bbb}', { FOO: 'xxx', BAR: '' }, Error],
  ['${BAZ:?ccc}', { FOO: 'xxx', BAR: '' }, Error],
  ['${BAZ:?}', { FOO: 'xxx', BAR: '' }, Error],
  ['${FOO=aaa}', { FOO: 'xxx', BAR: '' }, Error],
  ['${FOO=:aaa}', { FOO: 'xxx', BAR: '' }, Error],
  ['${FOO=}', {}, Error],
  ['${FOO#()[]{\\}^$.\\*\\?|\\\\}', { FOO: '()[]{}^$.*?|\\x' }, 'x'],
  ['${FOO%%\\**}', { FOO: 'xx**' }, 'xx'],
  ['${FOO#*x*y}', { FOO: 'xxyy' }, 'y'],
  ['${FOO#*}', { FOO: 'xxyy' }, 'xxyy'],
  ['${FOO#$BAR}', { FOO: 'xxyy', BAR: 'x' }, 'xyy'],
  ['${FOO#$BAR}', { FOO: 'xxyy', BAR: '' }, 'xxyy'],
  ['${FOO#}', { FOO: 'xxyy' }, 'xxyy'],
  ['${FOO##*x}', { FOO: 'xxyy' }, 'yy'],
  ['${FOO##}', { FOO: 'xxyy' }, 'xxyy'],
  ['${FOO#?\\?}', { FOO: '???y' }, '?y'],
  ['${ABC:-.}${FOO%x}${ABC:-.}', { FOO: 'xxyy' }, '.xxyy.'],
  ['${FOO%%\\**\\*}', { FOO: 'a***yy*' }, 'a'],
  ['${FOO%}', { FOO: 'xxyy' }, 'xxyy'],
  ['${FOO%%$BAR}', { FOO: 'xxyy', BAR: '' }, 'xxyy'],
  ['${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}', { FOO: '/foo*/*/*.txt', NEEDLE: '\\*/' }, '/foo.*/*.txt - /foo..*.txt'],
  ['${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}', { FOO: '/tmp/tmp/bar.txt', NEEDLE: '/tmp' }, '/tmp/bar.txt - /bar.txt'],
  ['${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}', { FOO: '/a/foo/b/c.txt', NEEDLE: '/?/', REPLACEMENT: '/' }, '/foo/b/c.txt - /foo/c.txt'],
  ['${FOO/$NEEDLE/$REPLACEMENT}', { FOO: 'http://google.de', NEEDLE: 'http://', REPLACEMENT: 'https://' }, 'https://google.de'],
  ['${FOO//\\//\\/}', { FOO: '/tmp/foo.txt' }, '\\/tmp\\/foo.txt'],
  ['${FOO/$BAR/ww}', { FOO: 'xxyy', BAR: '' }, 'wwxxyy'],
  ['${FOO//ww}', { FOO: 'xxyy' }, Error],
  ['${FOO//}', { FOO: 'xxyy' }, Error],
  ['${FOO///}', { FOO: 'xxyy' }, 'xxyy'],
  ['${FOO///}', {}, ''],
  // lex_test.go TestProcessWithMatchesPlatform
  [
    'something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz',
    { VERSION: 'v1.2.3', TARGETOS: 'linux', TARGETARCH: 'arm', TARGETVARIANT: 'v7' },
    'something-v1.2.3.linux-arm-v7.tar.gz',
  ],
  [
    'something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz',
    { VERSION: 'v1.2.3', TARGETOS: 'linux', TARGETARCH: 'amd64', TARGETVARIANT: '' },
    'something-v1.2.3.linux-amd64.tar.gz',
  ],
  // Quotes and escapes (sh's rules as lex.go has them).
  ["'$FOO ${FOO}'", { FOO: 'x' }, '$FOO ${FOO}'],
  ['"$FOO ${FOO}"', { FOO: 'x' }, 'x x'],
  ['\\$FOO', { FOO: 'x' }, '$FOO'],
  ['"\\$FOO \\" \\\\ \\a"', { FOO: 'x' }, '$FOO " \\ \\a'],
  ['a\\ b', {}, 'a b'],
  ['trailing\\', {}, 'trailing'],
  ['$', {}, '$'],
  ['$1$@', {}, ''],
  ['$FOO.bar', { FOO: 'x' }, 'x.bar'],
  ['${FOO}bar', { FOO: 'x' }, 'xbar'],
  ['$FOObar', { FOO: 'x' }, ''],
  ['${KOREAN}', { KOREAN: '한국어' }, '한국어'],
  ['$한국어', { 한국어: 'k' }, 'k'],
  ['${FOO:-"a b"}', {}, 'a b'],
  ["${FOO:-'a $b'}", {}, 'a $b'],
  ['${FOO:-${BAR:-deep}}', {}, 'deep'],
  // Syntax errors.
  ['${}', {}, Error],
  ['${:x}', {}, Error],
  ['${{x}', {}, Error],
  ['${FOO', {}, Error],
  ['${FOO:-x', {}, Error],
  ['${FOO:%x}', { FOO: 'x' }, Error],
  ['${FOO:#x}', { FOO: 'x' }, Error],
  ["'open", {}, Error],
  ['"open', {}, Error],
  ['${FOO#\\x}', { FOO: 'x' }, Error],
  // ${#VAR}: the length, an extension (Docker refuses it).
  ['${#FOO}', { FOO: 'héllo' }, '5'],
  ['${#FOO}', {}, '0'],
  ['${#FOO', { FOO: 'x' }, Error],
];

t.test('expandWord: lex.go ProcessWord cases', async (t) => {
  for (const [input, env, expected] of words) {
    if (expected === Error) {
      t.throws(() => expandWord(input, from(env), '\\'), { code: 'ERR_DOCKERFILE_PARSE' }, `${input} fails`);
    } else {
      t.equal(expandWord(input, from(env), '\\'), expected, input);
    }
  }
});

t.test('${VAR?msg} and ${VAR:?msg}: the message names the variable (TestShellParserMandatoryEnvVars)', async (t) => {
  const set = from({ VAR: 'plain', ARG: 'x' });
  const empty = from({ VAR: '', ARG: 'x' });
  const unset = from({ ARG: 'x' });
  t.equal(expandWord('${VAR:?message here$ARG}', set, '\\'), 'plain');
  t.throws(() => expandWord('${VAR:?message here$ARG}', empty, '\\'), { message: /VAR: message herex/ });
  t.throws(() => expandWord('${VAR:?message here$ARG}', unset, '\\'), { message: /VAR: message herex/ });
  t.equal(expandWord('${VAR?message here$ARG}', set, '\\'), 'plain');
  t.equal(expandWord('${VAR?message here$ARG}', empty, '\\'), '');
  t.throws(() => expandWord('${VAR?message here$ARG}', unset, '\\'), { message: /VAR: message herex/ });
  t.throws(() => expandWord('${VAR?}', unset, '\\'), { message: /VAR: is not allowed to be unset/ });
  t.throws(() => expandWord('${VAR:?}', empty, '\\'), { message: /VAR: is not allowed to be empty/ });
});

t.test('expandWords: split at unquoted whitespace after substitution', async (t) => {
  const env = from({ A: 'x y', E: '', S: ' lead trail ' });
  const cases: [string, string[]][] = [
    ['hello world', ['hello', 'world']],
    ['  spaced   out  ', ['spaced', 'out']],
    ['"hello world"', ['hello world']],
    ["'a b' c", ['a b', 'c']],
    ['$A', ['x', 'y']],
    ['"$A"', ['x y']],
    ['pre$A', ['prex', 'y']],
    ['a\\ b', ['a b']],
    ['$E', []],
    ['""', []],
    ['$S', ['lead', 'trail']],
    ['80/tcp ${PORT:-443}', ['80/tcp', '443']],
  ];
  for (const [input, expected] of cases) t.strictSame(expandWords(input, env, '\\'), expected, input);
});

t.test('the backtick escape (# escape=`) escapes, and \\ is then an ordinary character', async (t) => {
  const env = from({ FOO: 'x' });
  t.equal(expandWord('C:\\path\\$FOO', env, '`'), 'C:\\path\\x');
  t.equal(expandWord('`$FOO', env, '`'), '$FOO');
  t.equal(expandWord('"`"q`""', env, '`'), '"q"');
});

t.test('options: raw quotes and escapes, unset kept, quotes not processed (heredoc bodies)', async (t) => {
  const env = from({ SET: 'v' });
  t.equal(expandWord(`'a' "b" $UNSET \${UNSET:-d} $SET`, env, '\\', { rawQuotes: true, skipUnset: true }), `'a' "b" $UNSET \${UNSET:-d} v`);
  t.equal(expandWord('a\\b', env, '\\', { rawEscapes: true }), 'a\\b');
  t.equal(expandWord(`echo "it's $SET"\n`, env, '\\', { processQuotes: false }), `echo "it's v"\n`);
});

t.test('hostile words: nesting is capped, patterns never backtrack', async (t) => {
  const nested = (depth: number) => `${'${A:-'.repeat(depth)}x${'}'.repeat(depth)}`;
  t.equal(expandWord(nested(MAX_SUBSTITUTION_DEPTH), from({}), '\\'), 'x');
  t.throws(() => expandWord(nested(MAX_SUBSTITUTION_DEPTH + 1), from({}), '\\'), { code: 'ERR_DOCKERFILE_PARSE', message: /nested more than/ });
  t.throws(() => expandWord(nested(100_000), from({}), '\\'), { code: 'ERR_DOCKERFILE_PARSE' }, 'no stack overflow');
  // A pattern a backtracking regexp would take forever on: answered in one pass per start.
  const value = 'a'.repeat(20_000);
  t.equal(expandWord(`\${V##${'*a'.repeat(50)}b}`, from({ V: value }), '\\'), value);
  t.equal(expandWord(`\${V%%${'*a'.repeat(50)}b}`, from({ V: value }), '\\'), value);
  // Replacing everywhere with a pattern that runs to the end from every start is quadratic: refused past a budget.
  const long = 'a'.repeat(50_000);
  t.throws(() => expandWord('${V//*b/x}', from({ V: long }), '\\'), { code: 'ERR_DOCKERFILE_PARSE', message: /too expensive/ });
  t.equal(expandWord('${V//a/b}', from({ V: long }), '\\'), 'b'.repeat(50_000), 'a literal pattern stays linear');
  // Values are never rescanned: a value holding ${…} stays text.
  t.equal(expandWord('$V', from({ V: '${V}${V}' }), '\\'), '${V}${V}');
});
