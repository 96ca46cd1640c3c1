/** readDockerignore against moby/patternmatcher ignorefile.ReadAll's rules, table-driven. */
import t from 'tap';
import { readDockerignore } from '../src/dockerignore.js';
import { createIgnoreMatcher } from '../src/patterns.js';

t.test('ReadAll: comments, blank lines, trimming, Clean, leading / stripped, ! kept', async (t) => {
  const cases: [string, string, string[]][] = [
    // ignorefile_test.go TestReadAll's file.
    [
      'moby TestReadAll',
      'test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! \n',
      ['test1', 'test2', 'a/file/here', 'lastfile', '!inverted/abs/path', '!', '!'],
    ],
    ['empty', '', []],
    ['only comments and blanks', '# a\n\n   \n#b\n', []],
    ['# is a comment only in the first column', '  #notacomment\n', ['#notacomment']],
    ['Clean', './a//b/../c/\nx/.\n../up\n', ['a/c', 'x', '../up']],
    ['a lone / stays /', '/\n', ['/']],
    ['BOM and CRLF', '\uFEFFnode_modules\r\n*.log\r\n', ['node_modules', '*.log']],
    ['no final newline', 'a\nb', ['a', 'b']],
    ['exception trimmed and cleaned', '!  ./keep//this/\n', ['!keep/this']],
  ];
  for (const [name, text, expected] of cases) t.strictSame(readDockerignore(text), expected, name);
});

t.test('read then matched: a typical .dockerignore', async (t) => {
  const matcher = createIgnoreMatcher(readDockerignore('# build output\n/dist\nnode_modules\n**/*.log\n!important.log\n.git\n'));
  const cases: [string, boolean][] = [
    ['dist/app.js', true],
    ['src/dist/app.js', false],
    ['node_modules/x/index.js', true],
    ['a/b/c.log', true],
    ['important.log', false],
    ['sub/important.log', true],
    ['.git/HEAD', true],
    ['src/main.ts', false],
  ];
  for (const [path, expected] of cases) t.equal(matcher.ignores(path), expected, path);
});

t.test('a lone ! in the file is refused when matched, as moby does', async (t) => {
  t.throws(() => createIgnoreMatcher(readDockerignore('a\n!\n')), { code: 'ERR_DOCKERFILE_PARSE', message: /illegal exclusion/ });
});
