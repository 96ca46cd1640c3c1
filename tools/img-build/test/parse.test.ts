// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Dockerfile ${VAR} syntax is what these strings hold
/**
 * parseDockerfile and splitStages, table-driven, against buildkit's parser rules
 * (frontend/dockerfile/parser: parser.go, directives.go, line_parsers.go,
 * split_command.go; instructions/parse.go for stages). Each case names the rule.
 */
import t from 'tap';
import { MAX_DOCKERFILE_BYTES, parseDockerfile } from '../src/dockerfile/parse.js';
import { splitStages } from '../src/dockerfile/stages.js';

const parse = (text: string) => parseDockerfile(text);
const only = (text: string, index = 1) => parse(text).instructions[index];

t.test('parser directives: top only, case-insensitive, stop at the first other line', async (t) => {
  const cases: [string, string, Record<string, string | undefined>][] = [
    ['syntax and escape', '# syntax=docker/dockerfile:1\n# escape=`\nFROM x\n', { syntax: 'docker/dockerfile:1', escape: '`' }],
    ['keys are case-insensitive, spaces around = allowed', '#  ESCAPE = `\nFROM x\n', { escape: '`' }],
    ['check is recorded', '# check=skip=all\nFROM x\n', { check: 'skip=all', escape: '\\' }],
    ['after a blank line it is a comment', '\n# escape=`\nFROM x\n', { escape: '\\' }],
    ['after a comment it is a comment', '# hello\n# escape=`\nFROM x\n', { escape: '\\' }],
    ['after an unknown directive it is a comment', '# foo=bar\n# escape=`\nFROM x\n', { escape: '\\' }],
    ['after an instruction it is a comment', 'FROM x\n# escape=`\n', { escape: '\\' }],
    ['a BOM before the directive is dropped', '\uFEFF# escape=`\nFROM x\n', { escape: '`' }],
  ];
  for (const [name, text, expected] of cases) {
    const { directives } = parse(text);
    for (const [key, value] of Object.entries(expected)) t.equal(directives[key as keyof typeof directives], value, `${name}: ${key}`);
  }
  t.throws(() => parse('# escape=`\n# escape=\\\nFROM x\n'), { code: 'ERR_DOCKERFILE_PARSE', message: /^Dockerfile:2: only one escape parser directive/ });
  t.throws(() => parse('# escape=x\nFROM x\n'), { code: 'ERR_DOCKERFILE_PARSE', message: /^Dockerfile:1: invalid escape token 'x'/ });
});

t.test('comments, continuations, CRLF, BOM and keywords', async (t) => {
  // [rule, text, index of the instruction, expected fields]
  const cases: [string, string, number, { keyword?: string; rest?: string; line?: number; endLine?: number; original?: string }][] = [
    ['continuation joins lines, leading space of the next line kept', 'FROM x\nRUN a \\\n  b\n', 1, { rest: 'a   b', line: 2, endLine: 3 }],
    ['whitespace after the escape still continues', 'FROM x\nRUN a \\  \t\nb\n', 1, { rest: 'a b', endLine: 3 }],
    ['comments inside a continuation are dropped', 'FROM x\nRUN a \\\n  # not part of it\n# nor this\n  b\n', 1, { rest: 'a   b', endLine: 5 }],
    ['empty continuation lines are skipped', 'FROM x\nRUN a \\\n\n   \nb\n', 1, { rest: 'a b', endLine: 5 }],
    ['an escaped escape at the end is not a continuation', 'FROM x\nRUN echo \\\\\nRUN b\n', 1, { rest: 'echo \\\\', endLine: 2 }],
    ['a lone escape on a line continues', 'FROM x\nRUN a\\\n\\\nb\n', 1, { rest: 'ab', endLine: 4 }],
    ['CRLF line ends', 'FROM x\r\nRUN a \\\r\n b\r\n', 1, { rest: 'a  b', endLine: 3 }],
    ['keywords are case-insensitive', 'from x\nrUn y\n', 1, { keyword: 'RUN', rest: 'y', original: 'rUn y' }],
    ['leading whitespace and comments before an instruction', 'FROM x\n\n   # c\n\t  RUN  y  \n', 1, { rest: 'y', line: 4, original: 'RUN  y' }],
    ['# inside a line is not a comment', 'FROM x\nRUN echo # kept\n', 1, { rest: 'echo # kept' }],
    ['backtick escape continues lines and \\ does not', '# escape=`\nFROM x\nRUN dir c:\\ `\n  /w\n', 1, { rest: 'dir c:\\   /w', line: 3, endLine: 4 }],
    ['a continuation at the end of the file ends the instruction', 'FROM x\nRUN a \\', 1, { rest: 'a', endLine: 2 }],
  ];
  for (const [name, text, index, expected] of cases) t.match(only(text, index), expected, name);
  // Docker builds these but warns (and says they will become errors): so do we, through `warnings`.
  t.strictSame(parse('FROM x\nRUN a \\\n\nb\n').warnings, ['Dockerfile:2: empty continuation line in RUN a b']);
  t.strictSame(parse('FROM x\nRUN a \\\n# comment\nb\n').warnings, []);
});

t.test('files without instructions, without FROM, with unknown instructions', async (t) => {
  t.throws(() => parse(''), { code: 'ERR_DOCKERFILE_PARSE', message: 'Dockerfile: file with no instructions' });
  t.throws(() => parse('# only a comment\n\n  \n'), { message: 'Dockerfile: file with no instructions' });
  t.throws(() => parseDockerfile('RUN x\n', { file: 'ci/Dockerfile.test' }), { message: 'ci/Dockerfile.test: no FROM instruction' });
  t.throws(() => parse('FROM x\n\nRUNN y\n'), { code: 'ERR_DOCKERFILE_PARSE', message: 'Dockerfile:3: unknown instruction: RUNN', hint: 'did you mean RUN?' });
  t.throws(() => parse('FROM x\nFOO bar\n'), { message: 'Dockerfile:2: unknown instruction: FOO' });
  // The error carries the line for --log-format=json.
  t.throws(() => parse('FROM x\nFOO bar\n'), { details: { file: 'Dockerfile', line: 2 } });
  // A binary or giant word is shown short and escaped, not echoed whole.
  t.throws(() => parse(`FROM x\n\u0001${'Z'.repeat(10_000)}\n`), { message: /^Dockerfile:2: unknown instruction: \\u0001Z{99}…$/ });
});

t.test('JSON (exec) form: an array of strings, else shell form; an array of non-strings is an error', async (t) => {
  const cases: [string, string[] | undefined][] = [
    ['CMD ["a", "b c"]', ['a', 'b c']],
    ['CMD   ["a"]  ', ['a']],
    ['CMD []', []],
    ['ENTRYPOINT ["/bin/sh", "-c", "echo \\"hi\\""]', ['/bin/sh', '-c', 'echo "hi"']],
    ['RUN ["echo", "x"]', ['echo', 'x']],
    ['SHELL ["/bin/bash", "-eo", "pipefail", "-c"]', ['/bin/bash', '-eo', 'pipefail', '-c']],
    ['VOLUME ["/data", "/logs"]', ['/data', '/logs']],
    ['COPY ["a b", "/dst/"]', ['a b', '/dst/']],
    ['CMD [ "a", ]', undefined],
    ["CMD ['a']", undefined],
    ['CMD ["a"] trailing', undefined],
    ['CMD echo [x]', undefined],
    ['ENV A=["x"]', undefined],
    ['HEALTHCHECK CMD ["curl", "-f", "http://x/"]', ['curl', '-f', 'http://x/']],
    ['HEALTHCHECK CMD curl -f http://x/', undefined],
  ];
  for (const [line, expected] of cases) t.strictSame(only(`FROM x\n${line}\n`).json, expected, line);
  t.throws(() => parse('FROM x\nCMD ["a", 1]\n'), { message: 'Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only' });
  t.throws(() => parse('FROM x\nRUN [null]\n'), { code: 'ERR_DOCKERFILE_PARSE' });
});

t.test('flags: leading --name[=value] words, quotes removed, -- ends them', async (t) => {
  const cases: [string, { name: string; value: string; bare?: boolean }[], string][] = [
    [
      'COPY --from=build --chown="1:1" a b',
      [
        { name: 'from', value: 'build' },
        { name: 'chown', value: '1:1' },
      ],
      'a b',
    ],
    ['COPY --link a b', [{ name: 'link', value: 'true', bare: true }], 'a b'],
    ['COPY --link=false a b', [{ name: 'link', value: 'false' }], 'a b'],
    ["RUN --network='none' echo --not-a-flag", [{ name: 'network', value: 'none' }], 'echo --not-a-flag'],
    ['RUN --network=none -- --x', [{ name: 'network', value: 'none' }], '--x'],
    ['FROM --platform=$BUILDPLATFORM golang AS build', [{ name: 'platform', value: '$BUILDPLATFORM' }], 'golang AS build'],
    ['RUN echo -- x', [], 'echo -- x'],
    ['RUN -x', [], '-x'],
    [
      'HEALTHCHECK --interval=5s --retries=3 CMD true',
      [
        { name: 'interval', value: '5s' },
        { name: 'retries', value: '3' },
      ],
      'CMD true',
    ],
  ];
  for (const [line, flags, rest] of cases) {
    const instruction = parse(`${line.startsWith('FROM') ? '' : 'FROM x\n'}${line}\n`).instructions.at(-1);
    t.match(instruction, { flags, rest }, line);
    t.equal(instruction?.flags.length, flags.length, `${line}: flag count`);
  }
});

t.test('heredocs: RUN/COPY/ADD, <<- strips tabs, quoted names do not expand, several per line', async (t) => {
  const cases: [string, string, { name: string; content: string; expand: boolean }[], { rest?: string; endLine?: number }][] = [
    ['RUN <<EOF', 'RUN <<EOF\necho hi\necho there\nEOF\n', [{ name: 'EOF', content: 'echo hi\necho there\n', expand: true }], { rest: '<<EOF', endLine: 5 }],
    [
      '<<- strips leading tabs of body and terminator',
      'RUN <<-EOT\n\t\techo hi\n\tEOT\n',
      [{ name: 'EOT', content: 'echo hi\n', expand: true }],
      { endLine: 4 },
    ],
    ["<<'EOF' is literal", "RUN <<'EOF'\necho $HOME\nEOF\n", [{ name: 'EOF', content: 'echo $HOME\n', expand: false }], {}],
    ['<<"EOF" is literal', 'RUN <<"EOF"\necho $HOME\nEOF\n', [{ name: 'EOF', content: 'echo $HOME\n', expand: false }], {}],
    [
      'two heredocs on one line, read in order',
      'RUN <<A cat - <<B >out\nfirst\nA\nsecond\nB\n',
      [
        { name: 'A', content: 'first\n', expand: true },
        { name: 'B', content: 'second\n', expand: true },
      ],
      { rest: '<<A cat - <<B >out', endLine: 6 },
    ],
    ['COPY <<EOF /dest', 'COPY <<EOF /etc/motd\nhello\nEOF\n', [{ name: 'EOF', content: 'hello\n', expand: true }], { rest: '<<EOF /etc/motd' }],
    ['ADD with a file name', 'ADD <<app.conf /etc/\nk=v\napp.conf\n', [{ name: 'app.conf', content: 'k=v\n', expand: true }], {}],
    [
      'RUN python3 <<EOF',
      'RUN python3 <<EOF\nprint("# not a comment")\nFROM not-an-instruction\nEOF\n',
      [{ name: 'EOF', content: 'print("# not a comment")\nFROM not-an-instruction\n', expand: true }],
      {},
    ],
    ['a file descriptor before <<', 'RUN cat 3<<EOF\nx\nEOF\n', [{ name: 'EOF', content: 'x\n', expand: true }], {}],
    ['an empty body', 'RUN <<EOF\nEOF\n', [{ name: 'EOF', content: '', expand: true }], {}],
    ['CRLF bodies keep their \\r, as Docker', 'RUN <<EOF\r\nx\r\nEOF\r\n', [{ name: 'EOF', content: 'x\r\n', expand: true }], {}],
    ['ONBUILD RUN <<EOF', 'ONBUILD RUN <<EOF\nx\nEOF\n', [{ name: 'EOF', content: 'x\n', expand: true }], {}],
    ['the last line without a newline', 'RUN <<EOF\nx\nEOF', [{ name: 'EOF', content: 'x\n', expand: true }], {}],
  ];
  for (const [name, body, heredocs, fields] of cases) {
    const instruction = only(`FROM x\n${body}`);
    t.strictSame(instruction.heredocs, heredocs, name);
    t.match(instruction, fields, `${name}: fields`);
  }
  // No heredoc where Docker sees none: JSON form, other instructions, quoted or glued words, here-strings.
  const none = ['RUN ["<<EOF"]', 'ENV A=<<EOF', 'RUN echo "<<EOF"', 'RUN echo x<<EOF', 'RUN cat <<<EOF', 'RUN echo \\<<EOF'];
  for (const line of none) t.strictSame(parse(`FROM x\n${line}\nRUN next\n`).instructions[1].heredocs, [], line);
  // What follows a heredoc is the next instruction, with its own line number.
  const after = parse('FROM x\nRUN <<EOF\na\nEOF\nRUN b\n').instructions[2];
  t.match(after, { keyword: 'RUN', rest: 'b', line: 5 });
  t.throws(() => parse('FROM x\nRUN <<EOF\necho never closed\n'), {
    code: 'ERR_DOCKERFILE_PARSE',
    message: /^Dockerfile:2: unterminated heredoc <<EOF/,
  });
  t.throws(() => parse('FROM x\nRUN <<A <<B\na\nA\n'), { message: /^Dockerfile:2: unterminated heredoc <<B/ });
});

t.test('splitStages: global ARGs, named stages, duplicate and invalid names', async (t) => {
  const { globalArgs, stages } = splitStages(
    parse('ARG BASE=alpine\nARG V\nFROM ${BASE}:${V} AS Build\nRUN make\nFROM scratch\nCOPY --from=build /a /a\nFROM build as TEST\n'),
  );
  t.strictSame(
    globalArgs.map((a) => a.rest),
    ['BASE=alpine', 'V'],
  );
  t.equal(stages.length, 3);
  t.match(stages[0], { index: 0, name: 'build', from: { rest: '${BASE}:${V} AS Build' } });
  t.strictSame(
    stages[0].instructions.map((i) => i.keyword),
    ['RUN'],
  );
  t.match(stages[1], { index: 1, name: undefined });
  t.match(stages[2], { index: 2, name: 'test' });
  const errors: [string, RegExp][] = [
    ['FROM a AS x\nFROM b AS X\n', /^Dockerfile:2: duplicate stage name "x" \(first on line 1\)/],
    ['FROM a AS 1st\n', /^Dockerfile:1: invalid name for build stage: "1st"/],
    ['FROM a AS my/stage\n', /invalid name for build stage/],
    ['FROM a b\n', /^Dockerfile:1: FROM requires either one or three arguments/],
    ['FROM a AS\n', /FROM requires either one or three arguments/],
    ['FROM\n', /FROM requires either one or three arguments/],
    ['ARG A\nRUN x\nFROM a\n', /^Dockerfile:2: RUN before the first FROM/],
  ];
  for (const [text, message] of errors) t.throws(() => splitStages(parse(text)), { code: 'ERR_DOCKERFILE_PARSE', message }, text);
  const named = parseDockerfile('FROM a AS x\nFROM b AS x\n', { file: 'build/Containerfile' });
  t.throws(() => splitStages(named), { message: /^build\/Containerfile:2: duplicate stage name/ });
});

t.test('hostile input: size cap, a huge file, long lines, deep continuations', async (t) => {
  const big = `FROM x\n# ${'y'.repeat(MAX_DOCKERFILE_BYTES)}\n`;
  t.throws(() => parse(big), { code: 'ERR_DOCKERFILE_PARSE', message: /larger than 16 MiB/ });
  const lines = ['FROM scratch'];
  for (let i = 0; i < 100_000; i++) lines.push(i % 3 === 0 ? `ENV K${i}=v${i}` : i % 3 === 1 ? `# comment ${i}` : `LABEL l${i}="x \\\n  y"`);
  const parsed = parse(`${lines.join('\n')}\n`);
  t.equal(parsed.instructions.length, 1 + Math.ceil(100_000 / 3) + Math.floor(100_000 / 3));
  t.equal(parsed.instructions.at(-1)?.endLine, 100_000 + Math.floor(100_000 / 3) + 1);
  const long = only(`FROM x\nRUN echo ${'a'.repeat(1_000_000)}\n`);
  t.equal(long.rest.length, 5 + 1_000_000);
  const continued = only(`FROM x\nRUN a${' \\\n b'.repeat(20_000)}\n`);
  t.equal(continued.endLine, 20_002);
  // A heredoc-looking word with a quote that never closes is not a heredoc, not a crash.
  t.strictSame(only('FROM x\nRUN <<"EOF\nRUN y\n').heredocs, []);
});
