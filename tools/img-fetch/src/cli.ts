import { runCli } from '@conveyor/lib-common/cli';
import { flag, intFlag, parseBytes } from '@conveyor/lib-common/args';
import { argumentItems } from '@conveyor/lib-common/reference-input';
import { parseHostList, REGISTRY_FLAGS, registryClientOptions } from '@conveyor/registry/flags';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { hostPlatform, parsePlatform } from '@conveyor/lib-common/platform';
import type { RegistryClient } from '@conveyor/registry/client';

const HELP = `Usage: img-fetch [OPTIONS] [REFERENCE...]

Pull images (manifest, config and layers) from an OCI or Docker registry into
the local store, and print one \`image\` record per image. Each layer is
announced with a \`layer\` record as soon as it is verified in the store, and
one it downloads with a \`download\` record as the download starts, so
\`img-fetch | layer-unpack\` unpacks while the layers still download.

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
      --no-layers          do not print \`download\` and \`layer\` records, only \`image\` records
      --json               records even on a terminal (there, a docker-pull-like summary by default)
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
    string: ['platform', 'pull', 'jobs', 'max-blob-size', ...REGISTRY_FLAGS.string],
    multiple: ['registry-mirror', ...REGISTRY_FLAGS.multiple],
    boolean: ['layers', 'json', ...REGISTRY_FLAGS.boolean],
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
    const maxBlobSize = maxBlobSizeOf(flag(ctx.args, 'max-blob-size') ?? ctx.env.CONVEYOR_MAX_BLOB_SIZE);
    // Checked before anything is fetched: a bad --min-rate is a usage error, not a failed pull.
    const clientOptions = registryClientOptions(ctx.args, ctx.env, { userAgent: 'conveyor-img-fetch', onRetry: (message) => ctx.log.info(message) });
    const { Store } = await import('@conveyor/lib-common/store');
    const { fetchImage } = await import('./fetch.js');
    const mirrors = parseHostList([...(ctx.args['registry-mirror'] as string[]), ctx.env.CONVEYOR_REGISTRY_MIRRORS ?? '']);
    const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });

    let client: RegistryClient | undefined;
    // Loaded only when the store cannot answer alone: http, https and TLS cost start-up time.
    const makeClient = async (): Promise<RegistryClient> => {
      if (!client) {
        const { RegistryClient } = await import('@conveyor/registry/client');
        client = new RegistryClient(clientOptions);
      }
      return client;
    };

    const { pullEach } = await import('./pull-each.js');
    // On a terminal a docker-pull-like summary replaces the records (--json keeps them); piped, records.
    const summary = ctx.humanOutput && !ctx.args.json ? (await import('./summary.js')).pullSummary : undefined;
    const options = {
      pull: async (ref: string) => {
        const result = await fetchImage(ref, {
          store,
          client: makeClient,
          platform,
          platformExplicit: platformText !== undefined,
          pull,
          jobs,
          emitLayers: ctx.args.layers !== false,
          write: async (record) => (summary ? undefined : ctx.out.write(record)),
          progress: ctx.progress,
          info: (message) => ctx.log.info(message),
          warn: (message) => ctx.log.warn(message),
          onRetry: (message) => ctx.log.info(message),
          mirrors,
          maxBlobSize,
        });
        if (summary) ctx.print(summary(result));
        return result;
      },
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

/** --max-blob-size (or CONVEYOR_MAX_BLOB_SIZE); undefined keeps the library's default. */
function maxBlobSizeOf(value: string | undefined): number | undefined {
  const maxBlobSize = value === undefined || value === '' ? undefined : parseBytes(value, '--max-blob-size');
  if (maxBlobSize === 0) throw new ConveyorError('ERR_USAGE', '--max-blob-size must be more than 0');
  return maxBlobSize;
}
