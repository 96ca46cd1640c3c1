/**
 * patterns.ts against the tables of the code it copies: moby/patternmatcher's
 * patternmatcher_test.go (TestMatches, multi-pattern cases, TestMatch) and Go's
 * path/filepath match_test.go for globMatch, plus the walker's mayIncludeUnder
 * and hostile patterns.
 */
import t from 'tap';
import { cleanPath, createIgnoreMatcher, globMatch, ignoreShortcut, MAX_PATTERN_CHARS } from '../src/patterns.js';

// patternmatcher_test.go TestMatches: [pattern, path, matches (exact or through a parent)].
const single: [string, string, boolean][] = [
  ['**', 'file', true],
  ['**', 'file/', true],
  ['**/', 'file', true],
  ['**/', 'file/', true],
  ['**', '/', true],
  ['**/', '/', true],
  ['**', 'dir/file', true],
  ['**/', 'dir/file', true],
  ['**', 'dir/file/', true],
  ['**/', 'dir/file/', true],
  ['**/**', 'dir/file', true],
  ['**/**', 'dir/file/', true],
  ['dir/**', 'dir/file', true],
  ['dir/**', 'dir/file/', true],
  ['dir/**', 'dir/dir2/file', true],
  ['dir/**', 'dir/dir2/file/', true],
  ['**/dir', 'dir', true],
  ['**/dir', 'dir/file', true],
  ['**/dir2/*', 'dir/dir2/file', true],
  ['**/dir2/*', 'dir/dir2/file/', true],
  ['**/dir2/**', 'dir/dir2/dir3/file', true],
  ['**/dir2/**', 'dir/dir2/dir3/file/', true],
  ['**file', 'file', true],
  ['**file', 'dir/file', true],
  ['**/file', 'dir/file', true],
  ['**file', 'dir/dir/file', true],
  ['**/file', 'dir/dir/file', true],
  ['**/file*', 'dir/dir/file', true],
  ['**/file*', 'dir/dir/file.txt', true],
  ['**/file*txt', 'dir/dir/file.txt', true],
  ['**/file*.txt', 'dir/dir/file.txt', true],
  ['**/file*.txt*', 'dir/dir/file.txt', true],
  ['**/**/*.txt', 'dir/dir/file.txt', true],
  ['**/**/*.txt2', 'dir/dir/file.txt', false],
  ['**/*.txt', 'file.txt', true],
  ['**/**/*.txt', 'file.txt', true],
  ['a**/*.txt', 'a/file.txt', true],
  ['a**/*.txt', 'a/dir/file.txt', true],
  ['a**/*.txt', 'a/dir/dir/file.txt', true],
  ['a/*.txt', 'a/dir/file.txt', false],
  ['a/*.txt', 'a/file.txt', true],
  ['a/*.txt**', 'a/file.txt', true],
  ['a[b-d]e', 'ae', false],
  ['a[b-d]e', 'ace', true],
  ['a[b-d]e', 'aae', false],
  ['a[^b-d]e', 'aze', true],
  ['.*', '.foo', true],
  ['.*', 'foo', false],
  ['abc.def', 'abcdef', false],
  ['abc.def', 'abc.def', true],
  ['abc.def', 'abcZdef', false],
  ['abc?def', 'abcZdef', true],
  ['abc?def', 'abcdef', false],
  ['**/foo/bar', 'foo/bar', true],
  ['**/foo/bar', 'dir/foo/bar', true],
  ['**/foo/bar', 'dir/dir2/foo/bar', true],
  ['abc/**', 'abc', false],
  ['abc/**', 'abc/def', true],
  ['abc/**', 'abc/def/ghi', true],
  ['**/.foo', '.foo', true],
  ['**/.foo', 'bar.foo', false],
  ['a(b)c/def', 'a(b)c/def', true],
  ['a(b)c/def', 'a(b)c/xyz', false],
  ['a.|)$(}+{bc', 'a.|)$(}+{bc', true],
  ['dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', true],
  ['dist/*.whl', 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', true],
  ['a\\\\', 'a\\', true],
  ['a\\*b', 'a*b', true],
  // patternmatcher's suffix match: `**foo` is any path ending in "foo", not only a file named foo.
  ['**foo', 'barfoo', true],
  ['**/foo', 'barfoo', false],
];

t.test('patternmatcher TestMatches: one pattern, the path or a parent matches', async (t) => {
  for (const [pattern, path, expected] of single) {
    t.equal(createIgnoreMatcher([pattern]).ignores(path), expected, `${pattern} vs ${path}`);
  }
});

t.test('the shortcuts (a literal, `*` + a literal, `**/` + a literal) agree with the automaton', async (t) => {
  // [pattern, whether it has a shortcut]: the shapes most .dockerignore lines have take one, the rest the automaton.
  const shapes: [string, boolean][] = [
    ['node_modules', true],
    ['.git', true],
    ['a/b', true],
    ['abc.def', true],
    ['a(b)c/def', true],
    ['a\\*b', true],
    ['dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', true],
    ['*.log', true],
    ['*c', true],
    ['*x', true],
    ['*.txt.bak', true],
    ['**/node_modules', true],
    ['**/foo/bar', true],
    ['**/.foo', true],
    ['**/dir', true],
    ['*/x', false],
    ['**foo', false],
    ['**', false],
    ['*', false],
    ['a*', false],
    ['dist/*.whl', false],
    ['**/*.log', false],
    ['[ab]', false],
    ['a?b', false],
    ['\ud83d\ude00', false],
  ];
  const paths = [
    ...new Set([
      ...single.map(([, path]) => path),
      '',
      '.',
      '/',
      'node_modules',
      'node_modules/x/y',
      'a/node_modules',
      'a/node_modules/b',
      'xnode_modules',
      'node_modulesx/y',
      'a/xnode_modules/b',
      'node_modules/node_modules',
      '.git',
      '.git/HEAD',
      'sub/.git',
      'a/b',
      'a/b/c',
      'a/bc',
      'x/a/b',
      'a.log',
      'a.log/x',
      'x/a.log',
      '.log',
      'log',
      'b/a.log/c',
      'a.log.txt',
      'c',
      'abc',
      'abc/d',
      'xxx',
      'x',
      'f.txt.bak',
      '.txt.bak',
      'foo/bar',
      'dir/foo/bar/baz',
      'dir/foo/barz',
      'dirfoo/bar',
      'foo/bar/foo/bar',
      'a*b',
      'a*b/c',
      'dir',
      'dir/dir',
      'x/dir/',
      'dir//x',
      'é/dir',
      '\ud83d\ude00',
      '\ud83d\ude00/a.log',
      'x\ud83d\ude00/node_modules',
    ]),
  ];
  for (const [pattern, shortcut] of shapes) {
    t.equal(ignoreShortcut(pattern) !== undefined, shortcut, `${pattern}: ${shortcut ? 'a shortcut' : 'the automaton'}`);
  }
  for (const pattern of [...shapes.map(([p]) => p), ...single.map(([p]) => p)]) {
    const fast = createIgnoreMatcher([pattern]);
    const automaton = createIgnoreMatcher([pattern], { automatonOnly: true });
    for (const path of paths) t.equal(fast.ignores(path), automaton.ignores(path), `${pattern} vs ${JSON.stringify(path)}`);
  }
  // Between exceptions too: the last matching pattern wins either way.
  const lists = [
    ['*.log', '!keep.log'],
    ['node_modules', '!node_modules/keep'],
    ['**/node_modules', '!a/node_modules'],
  ];
  for (const list of lists) {
    const fast = createIgnoreMatcher(list);
    const automaton = createIgnoreMatcher(list, { automatonOnly: true });
    for (const path of [...paths, 'keep.log', 'node_modules/keep', 'node_modules/keep/x', 'a/node_modules/y']) {
      t.equal(fast.ignores(path), automaton.ignores(path), `${JSON.stringify(list)} vs ${JSON.stringify(path)}`);
    }
  }
});

t.test('exceptions: the last matching pattern wins, a directory match covers what is below', async (t) => {
  const cases: [string[], string, boolean][] = [
    // patternmatcher_test.go multiPatternTests
    [['**', '!util/docker/web'], 'util/docker/web/foo', false],
    [['**', '!util/docker/web', 'util/docker/web/foo'], 'util/docker/web/foo', true],
    [['**', '!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl'], 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', false],
    [['**', '!dist/*.whl'], 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', false],
    // TestExclusionPatternMatchesPatternBefore / After, TestPatternMatchesFolder*Exclusions
    [['!fileutils.go', '*.go'], 'fileutils.go', true],
    [['*.go', '!fileutils.go'], 'fileutils.go', false],
    [['docs', '!docs/README.md'], 'docs/README.md', false],
    [['docs/', '!docs/README.md'], 'docs/README.md', false],
    [['docs/*', '!docs/README.md'], 'docs/README.md', false],
    [['docs', '!docs/README.md'], 'docs/other.md', true],
    [['*'], 'fileutils.go', true],
    [['*.go'], 'fileutils.go', true],
    [[], 'any/path/there', false],
    [['docs', '', '   '], 'docs/x', true],
    [['  !docs/README.md  ', 'docs'], 'docs/README.md', true],
    [['docs', '  !docs/README.md  '], 'docs/README.md', false],
    // Patterns are cleaned: ./, //, .. and a trailing / do not change what they mean.
    [['./docs//x/../y/'], 'docs/y/z', true],
    // Paths from a walker may come with ./ or a leading /.
    [['docs'], './docs/a', true],
    [['docs'], '/docs/a', true],
    // The context root itself is never excluded (TestExclusionPatternMatchesWholeDirectory).
    [['*', '**'], '.', false],
    [['*'], '', false],
    [['*'], './', false],
  ];
  for (const [patterns, path, expected] of cases) {
    t.equal(createIgnoreMatcher(patterns).ignores(path), expected, `${JSON.stringify(patterns)} vs ${path}`);
  }
});

// Go's path/filepath match_test.go (what patternmatcher's TestMatch is "stolen from"): [pattern, name, match, bad].
const goMatch: [string, string, boolean, boolean?][] = [
  ['abc', 'abc', true],
  ['*', 'abc', true],
  ['*c', 'abc', true],
  ['a*', 'a', true],
  ['a*', 'abc', true],
  ['a*', 'ab/c', false],
  ['a*/b', 'abc/b', true],
  ['a*/b', 'a/c/b', false],
  ['a*b*c*d*e*/f', 'axbxcxdxe/f', true],
  ['a*b*c*d*e*/f', 'axbxcxdxexxx/f', true],
  ['a*b*c*d*e*/f', 'axbxcxdxe/xxx/f', false],
  ['a*b*c*d*e*/f', 'axbxcxdxexxx/fff', false],
  ['a*b?c*x', 'abxbbxdbxebxczzx', true],
  ['a*b?c*x', 'abxbbxdbxebxczzy', false],
  ['ab[c]', 'abc', true],
  ['ab[b-d]', 'abc', true],
  ['ab[e-g]', 'abc', false],
  ['ab[^c]', 'abc', false],
  ['ab[^b-d]', 'abc', false],
  ['ab[^e-g]', 'abc', true],
  ['a\\*b', 'a*b', true],
  ['a\\*b', 'ab', false],
  ['a?b', 'a☺b', true],
  ['a[^a]b', 'a☺b', true],
  ['a???b', 'a☺b', false],
  ['a[^a][^a][^a]b', 'a☺b', false],
  ['[a-ζ]*', 'α', true],
  ['*[a-ζ]', 'A', false],
  ['a?b', 'a/b', false],
  ['a*b', 'a/b', false],
  ['[\\]a]', ']', true],
  ['[\\-]', '-', true],
  ['[x\\-]', 'x', true],
  ['[x\\-]', '-', true],
  ['[x\\-]', 'z', false],
  ['[\\-x]', 'x', true],
  ['[\\-x]', '-', true],
  ['[\\-x]', 'a', false],
  ['[]a]', ']', false, true],
  ['[-]', '-', false, true],
  ['[x-]', 'x', false, true],
  ['[x-]', '-', false, true],
  ['[x-]', 'z', false, true],
  ['[-x]', 'x', false, true],
  ['[-x]', '-', false, true],
  ['[-x]', 'a', false, true],
  ['\\', 'a', false, true],
  ['[a-b-c]', 'a', false, true],
  ['[', 'a', false, true],
  ['[^', 'a', false, true],
  ['[^bc', 'a', false, true],
  ['a[', 'a', false, true],
  ['a[', 'ab', false, true],
  ['a[', 'x', false, true],
  ['a/b[', 'x', false, true],
  ['*x', 'xxx', true],
];

t.test('globMatch is Go filepath.Match: * and ? stop at /, malformed patterns are errors', async (t) => {
  for (const [pattern, name, expected, bad] of goMatch) {
    if (bad) {
      t.throws(() => globMatch(pattern, name), { code: 'ERR_DOCKERFILE_PARSE' }, `${pattern} is a bad pattern`);
    } else {
      t.equal(globMatch(pattern, name), expected, `${pattern} vs ${name}`);
    }
  }
});

t.test('ignore patterns are checked as filepath.Match would; a lone ! is refused', async (t) => {
  for (const bad of ['[', 'a[', '[]a]', '\\', '!', '![x-]']) {
    t.throws(() => createIgnoreMatcher(['ok', bad]), { code: 'ERR_DOCKERFILE_PARSE' }, JSON.stringify(bad));
  }
  t.throws(() => createIgnoreMatcher(['a[', '!x'], { file: '.dockerignore' }), { message: '.dockerignore: syntax error in pattern "a["' });
  t.throws(() => createIgnoreMatcher(['!'], { file: 'app/Dockerfile.dockerignore' }), {
    message: 'app/Dockerfile.dockerignore: illegal exclusion pattern: "!"',
  });
  // The same table through parent matching (patternmatcher TestMatch): `a*` excludes ab/c because ab matches.
  t.equal(createIgnoreMatcher(['a*']).ignores('ab/c'), true);
  t.equal(createIgnoreMatcher(['a*/b']).ignores('a/c/b'), false);
});

t.test('mayIncludeUnder: whether a walker must descend into an excluded directory', async (t) => {
  const cases: [string[], string, boolean][] = [
    [['docs', '!docs/README.md'], 'docs', true],
    [['docs', '!docs/README.md'], 'src', false],
    [['**', '!**/keep'], 'a/b', true],
    [['**', '!*/keep'], 'a', true],
    [['**', '!*/keep'], 'a/b', false],
    [['node_modules', '!src/*.ts'], 'node_modules', false],
    [['vendor', '!vendor'], 'vendor', true],
    [['vendor', '!vendor/[a-c]*/x'], 'vendor', true],
    [['vendor', '!vendor/[a-c]*/x'], 'vendor/zeta', false],
    [['*'], 'anything', false],
  ];
  for (const [patterns, dir, expected] of cases) {
    t.equal(createIgnoreMatcher(patterns).mayIncludeUnder(dir), expected, `${JSON.stringify(patterns)} under ${dir}`);
  }
});

t.test('sameBelow: a directory whose entries need not be asked about is one whose entries all answer as it does', async (t) => {
  const cases: [string[], string, boolean][] = [
    [['*.log'], 'src', true],
    [['*.log'], 'src/pkg', true],
    [['*.log'], 'a.log', true],
    [['node_modules', '.git'], 'src', true],
    [['node_modules'], 'node_modules', true],
    [['src/x'], 'src', false],
    [['src/*.tmp'], 'src', false],
    [['**/*.log'], 'src', false],
    [['**'], 'src', false],
    [['*/x'], 'src', false],
    [['**/node_modules'], 'src', false],
    [['src', '!src/keep'], 'src', false],
    [['*.log', '!keep.log'], 'src', true],
    [['/src/x'], 'other', true],
    [[], 'src', true],
  ];
  for (const [patterns, dir, expected] of cases) {
    t.equal(createIgnoreMatcher(patterns).sameBelow(dir), expected, `${JSON.stringify(patterns)} below ${dir}`);
  }
  // Generated (seeded): wherever it says so, every path below answers as the directory does.
  let a = 17;
  const next = () => {
    a = (a * 1103515245 + 12345) & 0x7fffffff;
    return a / 0x7fffffff;
  };
  const pick = <T>(items: T[]) => items[Math.floor(next() * items.length)];
  const segment = () => pick(['a', 'b', 'ab', 'a.txt', 'b.log', 'src']);
  const path = (depth: number) => Array.from({ length: depth }, segment).join('/');
  const piece = () => pick(['a', 'b', '*', '**', '?', 'a*', '*.txt', '[ab]', 'ab', '*.log', 'src']);
  let said = 0;
  for (let round = 0; round < 800; round++) {
    const patterns = Array.from({ length: 1 + Math.floor(next() * 3) }, () => {
      const pattern = Array.from({ length: 1 + Math.floor(next() * 3) }, piece).join('/');
      return next() < 0.3 ? `!${pattern}` : pattern;
    });
    const matcher = createIgnoreMatcher(patterns);
    for (let d = 0; d < 4; d++) {
      const dir = path(1 + Math.floor(next() * 2));
      if (!matcher.sameBelow(dir)) continue;
      said++;
      for (let c = 0; c < 8; c++) {
        const below = `${dir}/${path(1 + Math.floor(next() * 3))}`;
        if (matcher.ignores(below) !== matcher.ignores(dir)) t.fail(`${JSON.stringify(patterns)}: ${below} answers otherwise than ${dir}`);
      }
    }
  }
  t.ok(said > 100, `checked below ${said} directories`);
});

t.test('cleanPath is Go path.Clean', async (t) => {
  const cases: [string, string][] = [
    ['', '.'],
    ['.', '.'],
    ['/', '/'],
    ['a//b/./c/', 'a/b/c'],
    ['a/../../b', '../b'],
    ['/../a', '/a'],
    ['./a/', 'a'],
    ['a/b/..', 'a'],
    ['!a/../b', 'b'],
  ];
  for (const [input, expected] of cases) t.equal(cleanPath(input), expected, JSON.stringify(input));
});

t.test('hostile patterns cost linear time, not backtracking', async (t) => {
  // Patterns past PATH_MAX are refused, in both dialects.
  t.throws(() => globMatch('a'.repeat(MAX_PATTERN_CHARS + 1), 'a'), { code: 'ERR_DOCKERFILE_PARSE', message: /longer than 4096/ });
  t.throws(() => createIgnoreMatcher(['*'.repeat(MAX_PATTERN_CHARS + 1)], { file: '.dockerignore' }), { message: /^\.dockerignore: pattern longer than 4096/ });
  // Literal patterns keep one live state: a long one against a long path is one pass.
  const literal = 'ab/'.repeat(1300);
  t.equal(globMatch(literal, literal), true);
  t.equal(createIgnoreMatcher([literal.slice(0, -1)]).ignores(`${literal}x`), true);
  // Backtracking regexps take exponential time on these; the automaton finishes at once (no timing asserted:
  // the test would simply hang without it).
  const stars = `${'*a'.repeat(200)}b`;
  t.equal(globMatch(stars, 'a'.repeat(5000)), false);
  const dirs = `${'**/'.repeat(200)}x`;
  t.equal(createIgnoreMatcher([dirs]).ignores(`${'d/'.repeat(2000)}y`), false);
  t.equal(createIgnoreMatcher([dirs]).ignores(`${'d/'.repeat(2000)}x`), true);
  t.equal(createIgnoreMatcher([`${'[a-z]*'.repeat(100)}!`]).ignores('q'.repeat(3000)), false);
});
