// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Dockerfile ${VAR} syntax is what these strings hold
/**
 * resolveStep, table-driven, against buildkit's instructions/parse.go (flags,
 * argument counts, HEALTHCHECK durations, ENV/LABEL/ARG forms) and the
 * dispatcher's expansion rules (which instructions expand, with which values).
 */
import t from 'tap';
import { parseDockerfile } from '../src/dockerfile/parse.js';
import { parseGoDuration } from '../src/dockerfile/healthcheck.js';
import { resolveStep } from '../src/dockerfile/resolve.js';
import type { Lookup, Step } from '../src/dockerfile/steps.js';

const vars: Record<string, string> = {
  BASE: 'alpine',
  V: '3.19',
  P: 'linux/arm64',
  A: 'a',
  EMPTY: '',
  SPACED: 'x y',
  U: '1000',
  G: '1000',
  D: '/dst',
  SUB: 'src',
  PORT: '8080',
  MODE: '0644',
};
const lookup: Lookup = (name) => (Object.hasOwn(vars, name) ? vars[name] : undefined);

/** The last instruction of a Dockerfile (a FROM is added when the text has none), resolved. */
function step(text: string, escapeChar: '\\' | '`' = '\\'): Step {
  const source = /^\s*(#.*\n)*\s*FROM/i.test(text) ? text : `FROM scratch\n${text}`;
  const { instructions } = parseDockerfile(source);
  return resolveStep(instructions[instructions.length - 1], lookup, escapeChar);
}

t.test('what each instruction resolves to', async (t) => {
  const cases: [string, Record<string, unknown>][] = [
    // FROM: image and platform expanded (with global ARGs), stage name lower-cased.
    ['FROM ${BASE}:${V} AS Build', { kind: 'FROM', image: 'alpine:3.19', name: 'build', line: 1 }],
    ['FROM --platform=$P ${BASE}', { kind: 'FROM', image: 'alpine', platform: 'linux/arm64' }],
    ['FROM scratch', { kind: 'FROM', image: 'scratch', name: undefined }],
    // RUN/CMD/ENTRYPOINT are the shell's: nothing expanded.
    ['RUN echo $A "${A}"', { kind: 'RUN', script: 'echo $A "${A}"', exec: undefined, heredocs: [] }],
    ['RUN ["echo", "$A"]', { kind: 'RUN', exec: ['echo', '$A'], script: undefined }],
    ['RUN --network=none make', { kind: 'RUN', network: 'none', script: 'make' }],
    ['RUN --network=host true', { kind: 'RUN', network: 'host' }],
    ['RUN <<EOF\necho $A\nEOF', { kind: 'RUN', script: '<<EOF', heredocs: [{ name: 'EOF', content: 'echo $A\n', expand: true }] }],
    ['CMD ["nginx", "-g", "daemon off;"]', { kind: 'CMD', exec: ['nginx', '-g', 'daemon off;'] }],
    ['CMD echo $A', { kind: 'CMD', script: 'echo $A', exec: undefined }],
    ['ENTRYPOINT []', { kind: 'ENTRYPOINT', exec: [] }],
    ['ENTRYPOINT', { kind: 'ENTRYPOINT', exec: [] }],
    ['SHELL ["/bin/bash", "-c"]', { kind: 'SHELL', shell: ['/bin/bash', '-c'] }],
    // COPY/ADD: sources and dest expanded one word each; quotes group; a variable holding spaces stays one.
    ['COPY a b $D/', { kind: 'COPY', sources: ['a', 'b'], dest: '/dst/', heredocs: [] }],
    ['COPY "a b" ${SPACED} $D', { kind: 'COPY', sources: ['a b', 'x y'], dest: '/dst' }],
    ['COPY ["$SUB/x y", "$D/"]', { kind: 'COPY', sources: ['src/x y'], dest: '/dst/' }],
    ['COPY --from=build --chown=$U:$G --chmod=$MODE --link /out /app', { from: 'build', chown: '1000:1000', chmod: '0644', link: true }],
    ['COPY --link=false a b', { link: false }],
    ['COPY --chown=$EMPTY --chmod=${NOPE} a b', { kind: 'COPY', chown: undefined, chmod: undefined }],
    ['FROM --platform=$EMPTY scratch', { kind: 'FROM', platform: undefined }],
    ['COPY --from=${BASE}:${V} /etc/os-release /', { from: 'alpine:3.19' }],
    [
      `ADD --checksum=sha256:${'a'.repeat(64)} --chown=1:2 https://example.com/x.tgz /opt/`,
      { kind: 'ADD', sources: ['https://example.com/x.tgz'], checksum: `sha256:${'a'.repeat(64)}`, chown: '1:2' },
    ],
    ['ADD --keep-git-dir=true https://example.com/r.git /src', { kind: 'ADD', keepGitDir: true }],
    // Heredoc files: expanded unless the word was quoted, quotes inside kept (buildkit's SkipProcessQuotes).
    [
      'COPY <<EOF <<"RAW" $D/\necho "it\'s $A"\nEOF\n$A stays\nRAW',
      {
        kind: 'COPY',
        sources: [],
        dest: '/dst/',
        heredocs: [
          { name: 'EOF', content: 'echo "it\'s a"\n', expand: true },
          { name: 'RAW', content: '$A stays\n', expand: false },
        ],
      },
    ],
    ['COPY <<conf.ini a.txt /etc/\nk=v\nconf.ini', { sources: ['a.txt'], heredocs: [{ name: 'conf.ini', content: 'k=v\n' }] }],
    // ENV/LABEL: every pair expands against the variables before the instruction (Docker's documented rule).
    [
      'ENV A=1 B="two words" C=${A:-x} D=$UNSET',
      {
        kind: 'ENV',
        pairs: [
          ['A', '1'],
          ['B', 'two words'],
          ['C', 'a'],
          ['D', ''],
        ],
      },
    ],
    ['ENV KEY value with  spaces', { kind: 'ENV', pairs: [['KEY', 'value with  spaces']] }],
    [
      'ENV Q="say \\"hi\\"" S=\'$A\' E=',
      {
        pairs: [
          ['Q', 'say "hi"'],
          ['S', '$A'],
          ['E', ''],
        ],
      },
    ],
    ['ENV ${SUB}_HOME=/x', { pairs: [['src_HOME', '/x']] }],
    [
      'LABEL "com.example.vendor"="ACME Inc" version=1.0 multi="a \\\n  b"',
      {
        kind: 'LABEL',
        pairs: [
          ['com.example.vendor', 'ACME Inc'],
          ['version', '1.0'],
          ['multi', 'a   b'],
        ],
      },
    ],
    ['LABEL maintainer Some One', { kind: 'LABEL', pairs: [['maintainer', 'Some One']] }],
    // ARG: names as written, defaults expanded.
    ['ARG A B=2 C=$V D=', { kind: 'ARG', args: [{ name: 'A' }, { name: 'B', default: '2' }, { name: 'C', default: '3.19' }, { name: 'D', default: '' }] }],
    ['ARG HTTP_PROXY', { args: [{ name: 'HTTP_PROXY' }] }],
    // Docker does not check ARG names.
    ['ARG my-arg=1 1x', { args: [{ name: 'my-arg', default: '1' }, { name: '1x' }] }],
    ['WORKDIR /app/$SUB', { kind: 'WORKDIR', path: '/app/src' }],
    ['WORKDIR relative', { kind: 'WORKDIR', path: 'relative' }],
    ['USER $U:$G', { kind: 'USER', user: '1000:1000' }],
    ['USER $EMPTY', { kind: 'USER', user: '' }],
    ['EXPOSE $EMPTY ${NOPE}', { kind: 'EXPOSE', ports: [] }],
    ['STOPSIGNAL SIGQUIT', { kind: 'STOPSIGNAL', signal: 'SIGQUIT' }],
    ['STOPSIGNAL 9', { kind: 'STOPSIGNAL', signal: '9' }],
    ['EXPOSE 80 443/UDP ${PORT}/tcp 7000-7010 0 65535/sctp', { kind: 'EXPOSE', ports: ['80', '443/UDP', '8080/tcp', '7000-7010', '0', '65535/sctp'] }],
    ['VOLUME /data "/with space" $D', { kind: 'VOLUME', paths: ['/data', '/with space', '/dst'] }],
    ['VOLUME ["/a", "$D"]', { kind: 'VOLUME', paths: ['/a', '/dst'] }],
    ['ONBUILD RUN echo $A', { kind: 'ONBUILD', instruction: 'RUN echo $A' }],
    ['ONBUILD COPY <<EOF /x\nhi\nEOF', { kind: 'ONBUILD', instruction: 'COPY <<EOF /x\nhi\nEOF' }],
    ['MAINTAINER Jane <jane@example.com>', { kind: 'MAINTAINER', author: 'Jane <jane@example.com>' }],
  ];
  for (const [text, expected] of cases) t.match(step(text), expected, text.split('\n')[0]);
  // original is the instruction as written, for history created_by.
  t.equal(step('  copy   --link a b  ').original, 'copy   --link a b');
});

t.test('HEALTHCHECK: NONE, CMD forms, Docker durations in nanoseconds', async (t) => {
  const cases: [string, Record<string, unknown>][] = [
    ['HEALTHCHECK NONE', { Test: ['NONE'] }],
    ['HEALTHCHECK none', { Test: ['NONE'] }],
    ['HEALTHCHECK CMD curl -f http://localhost/ || exit 1', { Test: ['CMD-SHELL', 'curl -f http://localhost/ || exit 1'] }],
    ['HEALTHCHECK CMD ["curl", "-f", "http://localhost/"]', { Test: ['CMD', 'curl', '-f', 'http://localhost/'] }],
    [
      'HEALTHCHECK --interval=30s --timeout=1m30s --start-period=1.5s --start-interval=500ms --retries=3 CMD true',
      { Test: ['CMD-SHELL', 'true'], Interval: 30e9, Timeout: 90e9, StartPeriod: 1.5e9, StartInterval: 500e6, Retries: 3 },
    ],
    ['HEALTHCHECK --interval=0s --retries=0 CMD true', { Test: ['CMD-SHELL', 'true'] }],
    ['HEALTHCHECK --interval=1ms cmd true', { Test: ['CMD-SHELL', 'true'], Interval: 1e6 }],
  ];
  for (const [text, expected] of cases) {
    const resolved = step(text);
    t.equal(resolved.kind, 'HEALTHCHECK', text);
    if (resolved.kind === 'HEALTHCHECK') t.strictSame(resolved.healthcheck, expected, text);
  }
  const durations: [string, number | undefined][] = [
    ['0', 0],
    ['300ms', 300e6],
    ['-1.5h', -5400e9],
    ['1h2m3s4ms5us6ns', 3723004005006],
    ['2µs', 2000],
    ['.5s', 500e6],
    ['1.s', 1e9],
    ['5', undefined],
    ['', undefined],
    ['s', undefined],
    ['1d', undefined],
    ['1s ', undefined],
    ['.s', undefined],
    [`${'9'.repeat(30)}h`, undefined],
  ];
  for (const [text, ns] of durations) t.equal(parseGoDuration(text), ns, `duration ${JSON.stringify(text)}`);
});

t.test('errors name the file and line, and say what to do', async (t) => {
  const cases: [string, RegExp, RegExp?][] = [
    ['FROM $UNSET', /^Dockerfile:1: base name \(\$UNSET\) should not be blank/],
    ['FROM --foo=x img', /^Dockerfile:1: unknown flag: --foo for FROM/, /FROM takes --platform/],
    ['RUN --mount=type=cache,target=/root/.cache make', /^Dockerfile:2: RUN --mount is not supported/, /COPY what the step needs/],
    ['RUN --security=insecure make', /RUN --security is not supported/],
    ['RUN --network=bridge make', /unsupported network mode "bridge"/, /default, none or host/],
    ['RUN --network make', /missing a value on flag: --network/],
    ['RUN --network=none --network=host make', /duplicate flag specified: --network/],
    ['RUN', /RUN requires at least one argument/],
    ['RUN []', /RUN requires at least one argument/],
    ['CMD --help', /unknown flag: --help for CMD/, /CMD takes no flags/],
    ['SHELL /bin/bash -c', /SHELL requires the arguments to be in JSON form/, /SHELL \["\/bin\/bash","-c"\]/],
    ['SHELL []', /SHELL requires at least one argument/],
    ['COPY onlyone', /COPY requires at least two arguments/],
    ['COPY a <<EOF\nx\nEOF', /COPY cannot accept a heredoc as a destination/],
    ['COPY --parents a/b /c', /COPY --parents is not supported/],
    ['COPY --chmod=u+x a /b', /invalid --chmod=u\+x/, /octal/],
    ['COPY --link=maybe a b', /expecting boolean value for flag --link, not: maybe/],
    ['COPY --from= a b', /--from can not be empty/],
    ['COPY $EMPTY /b', /COPY source can not be empty/],
    ['ADD --from=x a b', /unknown flag: --from for ADD/],
    ['ADD --checksum=md5:abc https://x /y', /invalid --checksum=md5:abc/],
    ['ENV', /ENV requires at least one argument/],
    ['ENV KEY', /ENV must have two arguments/],
    ['ENV a=1 b', /Syntax error - can't find = in "b"/],
    ['ENV =x', /ENV names can not be blank/],
    ['LABEL =x', /LABEL names can not be blank/],
    ['ARG', /ARG requires at least one argument/],
    ['ARG =x', /ARG names can not be blank/],
    ['ARG a\0b=2', /invalid ARG name "a\\u0000b"/],
    ['ENV A=x\0y', /ENV "A": a NUL character is not allowed/],
    ['WORKDIR', /WORKDIR requires exactly one argument/],
    ['WORKDIR $EMPTY', /WORKDIR cannot be empty/],
    ['WORKDIR ${NOPE:?must be set}', /^Dockerfile:2: failed to process "\$\{NOPE:\?must be set\}"/],
    ['WORKDIR ${NOPE:?must be set}', /NOPE: must be set/],
    ['STOPSIGNAL SIG KILL', /invalid STOPSIGNAL "SIG KILL"/],
    ['EXPOSE', /EXPOSE requires at least one argument/],
    ['EXPOSE http', /invalid port "http"/],
    ['EXPOSE 80/icmp', /invalid port "80\/icmp"/],
    ['EXPOSE 65536', /invalid port "65536"/],
    ['EXPOSE 90-80', /invalid port "90-80"/],
    ['VOLUME $EMPTY', /VOLUME specified can not be an empty string/],
    ['VOLUME ["/a", ""]', /VOLUME specified can not be an empty string/],
    ['HEALTHCHECK', /HEALTHCHECK requires at least one argument/],
    ['HEALTHCHECK NONE x', /HEALTHCHECK NONE takes no arguments/],
    ['HEALTHCHECK --interval=5s NONE', /HEALTHCHECK NONE takes no flags/],
    ['HEALTHCHECK FOO true', /Unknown type "FOO" in HEALTHCHECK \(try CMD\)/],
    ['HEALTHCHECK CMD', /Missing command after HEALTHCHECK CMD/],
    ['HEALTHCHECK CMD []', /Missing command after HEALTHCHECK CMD/],
    ['HEALTHCHECK --interval=5 CMD true', /invalid duration "5" for --interval/],
    ['HEALTHCHECK --timeout=500us CMD true', /Interval "timeout" cannot be less than 1ms/],
    ['HEALTHCHECK --interval=-1s CMD true', /cannot be less than 1ms/],
    ['HEALTHCHECK --retries=-1 CMD true', /--retries cannot be negative/],
    ['HEALTHCHECK --retries=x CMD true', /invalid --retries=x/],
    ['HEALTHCHECK --foo=1 CMD true', /unknown flag: --foo for HEALTHCHECK/],
    ['ONBUILD ONBUILD RUN x', /Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed/],
    ['ONBUILD FROM x', /FROM isn't allowed as an ONBUILD trigger/],
    ['ONBUILD', /ONBUILD requires at least one argument/],
    ['MAINTAINER', /MAINTAINER requires exactly one argument/],
  ];
  for (const [text, message, hint] of cases) {
    t.throws(() => step(text), { code: 'ERR_DOCKERFILE_PARSE', exitCode: 2, message }, text.split('\n')[0]);
    if (hint) t.throws(() => step(text), { hint }, `${text}: hint`);
  }
  // Values from the Dockerfile are shown short and with control characters escaped.
  const long = 'x'.repeat(5000);
  t.throws(() => step(`EXPOSE ${long}`), { message: new RegExp(`invalid port "${'x'.repeat(100)}…"$`) });
  t.throws(() => step('STOPSIGNAL "a\u001b[31mb"'), { message: /invalid STOPSIGNAL "a\\u001b\[31mb"/ });
  // The file name given to the parser is the one errors use.
  const { instructions } = parseDockerfile('FROM x\n\nWORKDIR\n', { file: 'docker/app.Dockerfile' });
  t.throws(() => resolveStep(instructions[1], lookup, '\\'), { message: /^docker\/app\.Dockerfile:3: WORKDIR requires exactly one argument/ });
});

t.test('the backtick escape changes what escapes, not what expands', async (t) => {
  t.match(step('# escape=`\nFROM x\nENV P=C:\\dir\\$SUB Q=`$A', '`'), {
    pairs: [
      ['P', 'C:\\dir\\src'],
      ['Q', '$A'],
    ],
  });
  t.match(step('# escape=`\nFROM x\nCOPY "a`"b" c:\\x\\', '`'), { sources: ['a"b'], dest: 'c:\\x\\' });
});
