import { runCli } from '@conveyor/lib-common/cli';
import { flag } from '@conveyor/lib-common/args';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { REGISTRY_FLAGS } from '@conveyor/registry/flags';

const HELP = `Usage: img-build [OPTIONS] CONTEXT

Build an image from a Dockerfile, as \`docker build\`: RUN steps run in real
containers (ctr-spawn) over an overlay of the stage's layers, each step's
result is cached in the store, and the image is tagged under every -t and
printed as one \`image\` record per name on stdout. Progress and the RUN
output go to stderr.

CONTEXT is the directory COPY and ADD take files from (minus .dockerignore).

Options:
  -t, --tag NAME[:TAG]     name the image (repeatable); none: an unnamed image
  -f, --file PATH          the Dockerfile (default CONTEXT/Dockerfile; - reads stdin)
      --build-arg K=V      set a build arg (repeatable); K alone takes K from the environment
      --target STAGE       build up to this stage (and the stages it needs)
      --no-cache           run every step (the cache is still written)
      --pull               fetch FROM images even when the store has them
      --network MODE       RUN steps' network: default (ctr-spawn's), none (lo only) or host
      --platform OS/ARCH   only this host's platform is built; anything else is refused
      --label K=V          add a label to the image (repeatable)
      --iidfile FILE       write the image's manifest digest to FILE
      --insecure           pulls: do not verify TLS certificates (and allow plain HTTP)
      --insecure-registry HOST  the same for this registry only (repeatable)
      --plain-http         pulls: talk plain HTTP to the registry
      --ca-file FILE       pulls: also trust this CA certificate (PEM)
      --min-rate RATE      pulls: end a transfer slower than RATE bytes/s
      --rate-window SECONDS  pulls: the window the minimum rate is measured over
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --progress MODE      auto or plain (default: Step N/M lines), json (events) or none
      --log-format FORMAT  text (default) or json
  -q, --quiet              print only the image's manifest digest on stdout, no progress
  -h, --help               show this help
      --version            print the version

SOURCE_DATE_EPOCH (seconds) in the environment sets every history time and
clamps file times in new layers, so the same inputs give the same image.

Examples:
  img-build -t localhost:5000/app:1 .
  img-build -f build/Dockerfile --build-arg VERSION=1.2 --target runtime -t app .
  img-build -q . | xargs img-inspect
  img-build -t app . && img-ls app | layer-unpack | ctr-spawn -- /app/run
  SOURCE_DATE_EPOCH=0 img-build --no-cache --iidfile id.txt -t app .

Exit status: 0 built, 1 a step failed (ERR_BUILD_STEP) or the build failed,
2 usage or a Dockerfile error (ERR_DOCKERFILE_PARSE), 130/143 cancelled by
SIGINT/SIGTERM.
`;

const PROGRESS_MODES = ['auto', 'plain', 'json', 'none', 'bar'];

// runCli knows the progress modes of the pulling tools (auto, json, bar, none); img-build's `plain` is their `bar` here.
const argv = process.argv.slice(2).map((a) => (a === '--progress=plain' ? '--progress=bar' : a));
const plainAt = argv.findIndex((a, i) => a === 'plain' && argv[i - 1] === '--progress');
if (plainAt >= 0) argv[plainAt] = 'bar';

await runCli(
  {
    name: 'img-build',
    help: HELP,
    spec: {
      string: ['file', 'target', 'network', 'platform', 'iidfile', ...REGISTRY_FLAGS.string],
      multiple: ['tag', 'build-arg', 'label', ...REGISTRY_FLAGS.multiple],
      boolean: ['cache', 'pull', ...REGISTRY_FLAGS.boolean],
      alias: { t: 'tag', f: 'file' },
      default: { cache: true },
    },
    recordsOnStdout: (args) => !args.quiet,
    // Run by a user: inside the store's user namespace (docs/rootless.md), where its RUN steps' ctr-spawn runs too.
    userNamespace: true,
    main: async (ctx) => {
      const { Store, assertTrustedStore } = await import('@conveyor/lib-common/store');
      const { normalizeReference } = await import('@conveyor/lib-common/reference');
      const { hostPlatform, parsePlatform, formatPlatform, platformMatches } = await import('@conveyor/lib-common/platform');
      const { acquireLease } = await import('@conveyor/lib-common/lease');
      const { build } = await import('./build.js');
      const { openContext, readDockerfile } = await import('./context.js');
      const { StepProgress } = await import('./progress.js');
      const { DefaultToolRunner } = await import('./tools.js');
      const { isRootless } = await import('@conveyor/lib-common/rootless/detect');
      const { DRIVER_ENV, parseDriver } = await import('@conveyor/lib-common/overlay/driver');

      const { args } = ctx;
      if (args._.length !== 1)
        throw new ConveyorError('ERR_USAGE', args._.length === 0 ? 'no build context given' : 'one build context only', {
          hint: 'img-build [OPTIONS] CONTEXT',
        });
      const progressMode = flag(args, 'progress') ?? 'auto';
      if (!PROGRESS_MODES.includes(progressMode)) throw new ConveyorError('ERR_USAGE', `--progress must be auto, plain, json or none`);
      const network = flag(args, 'network') ?? 'default';
      if (network !== 'default' && network !== 'none' && network !== 'host') {
        throw new ConveyorError('ERR_USAGE', `--network must be default, none or host, got ${JSON.stringify(network)}`);
      }
      const platform = flag(args, 'platform');
      if (platform !== undefined && !platformMatches(parsePlatform(platform), hostPlatform())) {
        throw new ConveyorError('ERR_USAGE', `--platform ${platform}: img-build builds for this host's platform only (${formatPlatform(hostPlatform())})`, {
          hint: 'build on a machine of that platform',
        });
      }
      const tags = (args.tag as string[]).map((t) => normalizeReference(t));
      const buildArgs = new Map<string, string>();
      for (const pair of args['build-arg'] as string[]) {
        const eq = pair.indexOf('=');
        if (eq === 0) throw new ConveyorError('ERR_USAGE', `--build-arg ${JSON.stringify(pair)}: no name`);
        if (eq > 0) buildArgs.set(pair.slice(0, eq), pair.slice(eq + 1));
        else if (ctx.env[pair] !== undefined) buildArgs.set(pair, ctx.env[pair]!);
      }
      const labels: [string, string][] = (args.label as string[]).map((pair) => {
        const eq = pair.indexOf('=');
        if (eq <= 0) throw new ConveyorError('ERR_USAGE', `--label ${JSON.stringify(pair)}: want KEY=VALUE`);
        return [pair.slice(0, eq), pair.slice(eq + 1)];
      });
      let sourceDateEpoch: number | undefined;
      const epoch = ctx.env.SOURCE_DATE_EPOCH;
      if (epoch !== undefined && epoch !== '') {
        if (!/^\d+$/.test(epoch)) throw new ConveyorError('ERR_USAGE', `SOURCE_DATE_EPOCH must be whole seconds, got ${JSON.stringify(epoch)}`);
        sourceDateEpoch = Number(epoch);
      }

      const contextDir = args._[0];
      const file = flag(args, 'file');
      const { text, name } = await readDockerfile(file, contextDir, ctx.stdin);
      const context = await openContext(contextDir, file);

      // The build mounts overlays and runs containers from this store: as overlay-mount and ctr-spawn, only one no other user can change.
      await assertTrustedStore(ctx.root);
      const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });
      await store.init();
      const toolArgs = [`--root=${ctx.root}`, ...(flag(args, 'log-format') ? [`--log-format=${flag(args, 'log-format')}`] : [])];
      const fetchArgs = [...toolArgs, '--progress=none'];
      for (const key of REGISTRY_FLAGS.string) if (flag(args, key) !== undefined) fetchArgs.push(`--${key}=${flag(args, key)}`);
      for (const host of args['insecure-registry'] as string[]) fetchArgs.push(`--insecure-registry=${host}`);
      for (const key of REGISTRY_FLAGS.boolean) if (args[key]) fetchArgs.push(`--${key}`);

      const mode = args.quiet || progressMode === 'none' ? 'none' : progressMode === 'json' ? 'json' : 'plain';
      const progress = new StepProgress(ctx.stderr, mode);
      const controller = new AbortController();
      const onSignal = (signal: NodeJS.Signals) => controller.abort(signal);
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      // The lease keeps img-prune from collecting the blobs and layers this build makes before its image is tagged.
      const lease = await acquireLease(store, { onWait: () => ctx.log.info('waiting for img-prune to finish') });
      try {
        const result = await build({
          store,
          context,
          dockerfile: { text, name },
          tags,
          buildArgs,
          target: flag(args, 'target'),
          noCache: args.cache === false,
          pull: Boolean(args.pull),
          network,
          labels,
          sourceDateEpoch,
          now: () => new Date(),
          runner: new DefaultToolRunner(process.execPath),
          progress,
          fetchArgs,
          toolArgs,
          warn: (message) => ctx.log.warn(message),
          signal: controller.signal,
          rootless: isRootless(),
          driver: parseDriver(ctx.env[DRIVER_ENV]),
        });
        const iidfile = flag(args, 'iidfile');
        if (iidfile !== undefined) {
          const { writeFile } = await import('node:fs/promises');
          await writeFile(iidfile, result.digest);
        }
        if (args.quiet) ctx.print(`${result.digest}\n`);
        else for (const record of result.records) await ctx.out.write(record);
      } finally {
        await lease.release();
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    },
  },
  argv,
);
