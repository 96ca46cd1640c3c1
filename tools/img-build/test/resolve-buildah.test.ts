// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Dockerfile ${VAR} syntax is what these strings hold
/**
 * The front end against an independent peer: Debian's buildah (1.28, whose
 * Dockerfile parser and lexer are buildkit's, vendored through imagebuilder)
 * builds FROM-scratch Dockerfiles without RUN, and the config it writes (Env,
 * Labels, WorkingDir, User, ExposedPorts, Cmd, Entrypoint, Volumes, StopSignal)
 * must be what our parse → splitStages → resolveStep gives, folded the way
 * Docker applies each instruction. Only syntax buildah 1.28 knows is used
 * (no ${VAR-x} without colon, no % # / modifiers, no heredocs, no escaped quote
 * inside double quotes under the backtick escape, which its older lexer reads differently).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { buildahMissing, startBuildah } from '../../../test/helpers/buildah.js';
import { parseDockerfile } from '../src/dockerfile/parse.js';
import { resolveStep } from '../src/dockerfile/resolve.js';
import { splitStages } from '../src/dockerfile/stages.js';

const execFileAsync = promisify(execFile);

interface Config {
  Env: string[];
  Labels: Record<string, string>;
  WorkingDir: string;
  User: string;
  ExposedPorts: Record<string, object>;
  Cmd?: string[];
  Entrypoint?: string[];
  Volumes: Record<string, object>;
  StopSignal: string;
}

/** Our front end's reading of a one-stage Dockerfile, applied as Docker applies each instruction. */
function ours(text: string, buildArgs: Record<string, string>): Config {
  const dockerfile = parseDockerfile(text);
  const escapeChar = dockerfile.directives.escape;
  const { globalArgs, stages } = splitStages(dockerfile);
  const globals = new Map<string, string | undefined>();
  for (const instruction of globalArgs) {
    const step = resolveStep(instruction, (name) => globals.get(name), escapeChar);
    if (step.kind === 'ARG') for (const arg of step.args) globals.set(arg.name, buildArgs[arg.name] ?? arg.default);
  }
  const args = new Map<string, string | undefined>();
  const env = new Map<string, string>();
  // ENV wins over ARG when expanding (Docker's rule); an ARG without value or build-arg is unset.
  const lookup = (name: string) => (env.has(name) ? env.get(name) : args.get(name));
  const config: Config = { Env: [], Labels: {}, WorkingDir: '', User: '', ExposedPorts: {}, Volumes: {}, StopSignal: '' };
  for (const instruction of stages[0].instructions) {
    const step = resolveStep(instruction, lookup, escapeChar);
    switch (step.kind) {
      case 'ARG':
        for (const arg of step.args) args.set(arg.name, buildArgs[arg.name] ?? arg.default ?? (globals.has(arg.name) ? globals.get(arg.name) : undefined));
        break;
      case 'ENV':
        for (const [key, value] of step.pairs) env.set(key, value);
        break;
      case 'LABEL':
        for (const [key, value] of step.pairs) config.Labels[key] = value;
        break;
      case 'WORKDIR':
        config.WorkingDir = posix.resolve(config.WorkingDir || '/', step.path);
        break;
      case 'USER':
        config.User = step.user;
        break;
      case 'EXPOSE':
        for (const port of step.ports) config.ExposedPorts[port.includes('/') ? port.toLowerCase() : `${port}/tcp`] = {};
        break;
      case 'VOLUME':
        for (const path of step.paths) config.Volumes[path] = {};
        break;
      case 'STOPSIGNAL':
        config.StopSignal = step.signal;
        break;
      case 'CMD':
      case 'ENTRYPOINT': {
        const argv = step.exec ?? ['/bin/sh', '-c', step.script as string];
        if (step.kind === 'CMD') config.Cmd = argv;
        else config.Entrypoint = argv;
        break;
      }
      default:
        throw new Error(`${step.kind} is not used in these Dockerfiles`);
    }
  }
  config.Env = [...env].map(([key, value]) => `${key}=${value}`);
  return config;
}

/** buildah's config for the same, without what buildah adds by itself (its PATH default and version label). */
function theirs(inspected: { OCIv1: { config: Record<string, any> } }): Config {
  const c = inspected.OCIv1.config;
  const labels = { ...(c.Labels ?? {}) };
  delete labels['io.buildah.version'];
  return {
    Env: (c.Env ?? []).filter((entry: string) => entry !== 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'),
    Labels: labels,
    WorkingDir: c.WorkingDir ?? '',
    User: c.User ?? '',
    ExposedPorts: c.ExposedPorts ?? {},
    Cmd: c.Cmd ?? undefined,
    Entrypoint: c.Entrypoint ?? undefined,
    Volumes: c.Volumes ?? {},
    StopSignal: c.StopSignal ?? '',
  };
}

/** The config without its unset fields, so "absent" and "undefined" compare equal. */
function defined(config: Config): Partial<Config> {
  return Object.fromEntries(Object.entries(config).filter(([, value]) => value !== undefined));
}

const cases: { name: string; dockerfile: string; buildArgs?: Record<string, string> }[] = [
  {
    name: 'ENV forms, quotes, escapes, substitution against the previous environment',
    dockerfile: `ARG BASE=scratch
FROM \${BASE}
ARG V=1.0
ARG EMPTY=
ENV A=1 B="two words" C=\${A:-x} D=$V E=\${EMPTY:-def} G='$A' \\
    H=\${V:+plus} I="q\\"uote" J=a\\ b K="\${A}-\${NOPE:-none}"
ENV OLD old form  value
ENV L=$A$B M="$C" N=\\$A
LABEL "com.example"="x y" v=$V multi="a \\
  b"
WORKDIR /app
WORKDIR sub/$V
USER 1000:\${V}
EXPOSE 80 443/udp \${PORT:-8080}/tcp
STOPSIGNAL SIGQUIT
VOLUME /data $V/logs
CMD echo $A
ENTRYPOINT ["/bin/sh", "-c", "$B"]
`,
  },
  {
    name: 'build args override defaults; ARG without a value stays unset; comments inside continuations',
    buildArgs: { V: 'from-cli', ONLY_CLI: 'cli' },
    dockerfile: `# syntax=docker/dockerfile:1
FROM scratch
ARG V=default
ARG ONLY_CLI
ARG UNSET
ENV V=$V C=\${ONLY_CLI} U=\${UNSET:-was-unset} \\
  # a comment inside the continuation
  W=after-comment
LABEL version="$V" \\
      empty=""
CMD ["run", "$V"]
`,
  },
  {
    // Only the continuation: buildah 1.28 still treats \ as the escape inside words under the backtick
    // directive (buildkit's lexer takes the directive's character; resolve.test.ts checks that).
    name: 'the backtick escape directive continues lines',
    dockerfile: `# escape=\`
FROM scratch
ENV X="a b" Y=plain
WORKDIR /w
ENV MULTI=one \`
    TWO=two
`,
  },
];

t.test('buildah reads these Dockerfiles as our front end does', { skip: buildahMissing() }, async (t) => {
  const buildah = await startBuildah();
  t.teardown(() => buildah.cleanup());
  const context = mkdtempSync(join(tmpdir(), 'conveyor-resolve-buildah-'));
  t.teardown(() => rmSync(context, { recursive: true, force: true }));
  for (const [index, testCase] of cases.entries()) {
    writeFileSync(join(context, 'Dockerfile'), testCase.dockerfile);
    const tag = `front-end-${index}`;
    const built = await buildah.bud(context, { tags: [tag], buildArgs: testCase.buildArgs });
    t.equal(built.code, 0, `${testCase.name}: buildah built it`, { stderr: built.stderr });
    if (built.code !== 0) continue;
    const [command, ...args] = buildah.command(['inspect', '--type', 'image', tag]);
    const { stdout } = await execFileAsync(command, args, { maxBuffer: 1 << 24 });
    t.strictSame(defined(ours(testCase.dockerfile, testCase.buildArgs ?? {})), defined(theirs(JSON.parse(stdout))), testCase.name);
  }
});
