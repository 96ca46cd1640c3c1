import { runCli } from '@conveyor/lib-common/cli';
import { flag, intFlag, parseBytes } from '@conveyor/lib-common/args';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { hostPlatform, parsePlatform } from '@conveyor/lib-common/platform';
import type { RegistryClient } from '@conveyor/registry/client';

const HELP = `Usage: img-fetch [OPTIONS] [REFERENCE...]

Pull images (manifest, config and layers) from an OCI or Docker registry into
the local store, and print one \`image\` record per image. Each layer is
announced with a \`layer\` record as soon as it is verified in the store, so
\`img-fetch | layer-unpack\` unpacks while later layers still download.

With no REFERENCE, references are read from stdin: one bare reference per
line, or records with \`ref\` (or \`name\` [+ \`tag\`]); other records pass
through unchanged.

A REFERENCE is [REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST]; \`alpine\` means
docker.io/library/alpine:latest. Registries on localhost and 127.0.0.0/8 fall
back to plain HTTP when they do not speak TLS.

Options:
      --platform OS/ARCH[/VARIANT]  platform to pick from an index (default: this host's)
      --pull POLICY        always (default): ask the registry for the tag's current manifest;
                           missing: use the store when the image is there; never: store only
  -j, --jobs N             parallel layer downloads (default 3)
      --no-layers          do not print \`layer\` records, only \`image\` records
      --insecure           do not verify TLS certificates (and allow plain HTTP), any registry
      --insecure-registry HOST  the same for this registry only (repeatable; also
                           CONVEYOR_INSECURE_REGISTRIES=host1,host2), as Docker's insecure-registries
      --plain-http         talk plain HTTP to the registry
      --registry-mirror HOST  try this mirror of docker.io first (repeatable; also
                           CONVEYOR_REGISTRY_MIRRORS=host1,host2), as Docker's registry-mirrors
      --ca-file FILE       also trust this CA certificate (PEM); SSL_CERT_FILE replaces
                           the system bundle; /etc/docker/certs.d/HOST/*.crt is read too
      --max-blob-size SIZE refuse a layer declared larger than this, before downloading
                           (default 16g; also CONVEYOR_MAX_BLOB_SIZE)
      --min-rate RATE      end a transfer slower than RATE bytes/s over the rate window
                           (default 1k; 0 turns it off; also CONVEYOR_MIN_RATE)
      --rate-window SECONDS  the window the minimum rate is measured over (default 60;
                           also CONVEYOR_RATE_WINDOW)
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --progress MODE      auto (default: bars on a terminal), json, bar or none
      --log-format FORMAT  text (default) or json (one object per line with a stable code)
  -q, --quiet              no progress, no info messages
  -h, --help               show this help
      --version            print the version

Credentials come from $DOCKER_CONFIG/config.json (default ~/.docker/config.json):
\`auths\`, \`credHelpers\` and \`credsStore\` (docker-credential-* helpers), as docker login writes them.

Examples:
  img-fetch alpine:3.20
  img-fetch --platform linux/arm64 localhost:5000/team/app:v2
  img-fetch busybox | layer-unpack | ctr-spawn -- echo hello
  echo 'debian:bookworm-slim' | img-fetch --no-layers | jq -r .digest
  img-fetch --pull=missing --progress=json app@sha256:4f3c... 2>progress.ndjson

Exit status: 0 every image pulled, 1 a pull failed (the others still ran), 2 usage or bad input.
`;

await runCli({
  name: 'img-fetch',
  help: HELP,
  spec: {
    string: ['platform', 'pull', 'jobs', 'ca-file', 'max-blob-size', 'min-rate', 'rate-window'],
    multiple: ['registry-mirror', 'insecure-registry'],
    boolean: ['layers', 'insecure', 'plain-http'],
    alias: { j: 'jobs' },
    default: { layers: true },
  },
  main: async (ctx) => {
    const pull = flag(ctx.args, 'pull') ?? 'always';
    if (pull !== 'always' && pull !== 'missing' && pull !== 'never') {
      throw new ConveyorError('ERR_USAGE', `--pull must be always, missing or never, got ${JSON.stringify(pull)}`);
    }
    const jobs = intFlag(ctx.args, 'jobs', 3, 1, 32);
    const platformText = flag(ctx.args, 'platform');
    const platform = platformText ? parsePlatform(platformText) : hostPlatform();
    const limits = transferLimits(
      flag(ctx.args, 'max-blob-size') ?? ctx.env.CONVEYOR_MAX_BLOB_SIZE,
      flag(ctx.args, 'min-rate') ?? ctx.env.CONVEYOR_MIN_RATE,
      flag(ctx.args, 'rate-window') ?? ctx.env.CONVEYOR_RATE_WINDOW,
    );
    const { Store } = await import('@conveyor/lib-common/store');
    const { fetchImage, parseHostList } = await import('./fetch.js');
    const mirrors = parseHostList([...(ctx.args['registry-mirror'] as string[]), ctx.env.CONVEYOR_REGISTRY_MIRRORS ?? '']);
    const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });

    let client: RegistryClient | undefined;
    let credentialsModule: typeof import('@conveyor/registry/credentials') | undefined;
    // Loaded only when the store cannot answer alone: http, https and TLS cost start-up time.
    const makeClient = async (): Promise<RegistryClient> => {
      if (!client) {
        const { RegistryClient } = await import('@conveyor/registry/client');
        client = new RegistryClient({
          insecure: Boolean(ctx.args.insecure),
          insecureRegistries: parseHostList([...(ctx.args['insecure-registry'] as string[]), ctx.env.CONVEYOR_INSECURE_REGISTRIES ?? '']),
          plainHttp: Boolean(ctx.args['plain-http']),
          caFile: flag(ctx.args, 'ca-file'),
          sslCertFile: ctx.env.SSL_CERT_FILE || undefined,
          credentials: async (registry) => {
            credentialsModule ??= await import('@conveyor/registry/credentials');
            return credentialsModule.lookupCredentials(registry, { env: ctx.env });
          },
          userAgent: 'conveyor-img-fetch',
          minRate: limits.minRate,
          rateWindowMs: limits.rateWindowMs,
          onRetry: (message) => ctx.log.info(message),
        });
      }
      return client;
    };

    const { pullEach, argumentItems } = await import('./pull-each.js');
    const options = {
      pull: (ref: string) =>
        fetchImage(ref, {
          store,
          client: makeClient,
          platform,
          platformExplicit: platformText !== undefined,
          pull,
          jobs,
          emitLayers: ctx.args.layers !== false,
          write: (record) => ctx.out.write(record),
          progress: ctx.progress,
          info: (message) => ctx.log.info(message),
          warn: (message) => ctx.log.warn(message),
          onRetry: (message) => ctx.log.info(message),
          mirrors,
          maxBlobSize: limits.maxBlobSize,
        }),
      write: (record: Record<string, unknown>) => ctx.out.write(record),
      info: (message: string) => ctx.log.info(message),
      error: (error: ConveyorError) => ctx.log.error(error),
    };
    try {
      if (ctx.args._.length > 0) return await pullEach(argumentItems(ctx.args._), options);
      if (ctx.stdin.isTTY)
        throw new ConveyorError('ERR_USAGE', 'no reference given', { hint: 'name an image (img-fetch alpine:3.20) or pipe references in; see --help' });
      const { readInput } = await import('./input.js');
      return await pullEach(readInput(ctx.stdin), options);
    } finally {
      client?.close();
    }
  },
});

/** The size and rate limits from flags (or their environment variables); undefined keeps the library's default. */
function transferLimits(
  maxBlob: string | undefined,
  minRate: string | undefined,
  window: string | undefined,
): { maxBlobSize?: number; minRate?: number; rateWindowMs?: number } {
  const maxBlobSize = maxBlob === undefined || maxBlob === '' ? undefined : parseBytes(maxBlob, '--max-blob-size');
  if (maxBlobSize === 0) throw new ConveyorError('ERR_USAGE', '--max-blob-size must be more than 0');
  const rate = minRate === undefined || minRate === '' ? undefined : parseBytes(minRate.replace(/\/s$/, ''), '--min-rate');
  let rateWindowMs: number | undefined;
  if (window !== undefined && window !== '') {
    const seconds = Number(window);
    if (!Number.isFinite(seconds) || seconds < 0.1 || seconds > 3600)
      throw new ConveyorError('ERR_USAGE', `--rate-window must be a number of seconds from 0.1 to 3600, got ${JSON.stringify(window)}`);
    rateWindowMs = Math.round(seconds * 1000);
  }
  return { maxBlobSize, minRate: rate, rateWindowMs };
}
