import { runCli } from '@conveyor/lib-common/cli';
import { flag, intFlag, parseBytes } from '@conveyor/lib-common/args';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { RegistryClient } from '@conveyor/registry/client';
import { REGISTRY_FLAGS, registryClientOptions } from '@conveyor/registry/flags';

const HELP = `Usage: img-push [OPTIONS] [REFERENCE...]

Push images from the local store to an OCI or Docker registry, and print one
\`image\` record per image pushed (its pushed reference and digest). Blobs the
registry already has are skipped; a blob another repository of the same
registry holds is mounted from it instead of uploaded; small blobs go up in one
request, large ones in chunks, and a broken upload resumes where the registry
says it stopped. Then the manifest (for a multi-platform image, its platform
manifests and the index) with the registry's returned digest checked.

With no REFERENCE, references are read from stdin: one bare reference per
line, or records with \`ref\` (image records from img-tag, img-ls, img-fetch);
other records pass through unchanged.

The image is pushed to the registry and repository its reference names; name
it there first with img-tag, or give --to.

Options:
      --to REFERENCE       push the (one) image under this reference instead
      --chunk-size SIZE    upload blobs larger than SIZE in PATCH chunks of SIZE (default 16m)
  -j, --jobs N             blobs pushed in parallel (default 3)
      --insecure           do not verify TLS certificates (and allow plain HTTP), any registry
      --insecure-registry HOST  the same for this registry only (repeatable; also
                           CONVEYOR_INSECURE_REGISTRIES=host1,host2)
      --plain-http         talk plain HTTP to the registry
      --ca-file FILE       also trust this CA certificate (PEM); SSL_CERT_FILE replaces
                           the system bundle; /etc/docker/certs.d/HOST/*.crt is read too
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
\`auths\`, \`credHelpers\` and \`credsStore\`, as docker login (or img-login) writes them.

Examples:
  img-tag app:dev registry.example.com/team/app:1.2 && img-push registry.example.com/team/app:1.2
  img-push --to localhost:5000/tools/busybox:stable busybox
  img-tag busybox localhost:5000/a:1 localhost:5000/b:1 | img-push
  img-push --progress=json localhost:5000/app:v2 2>progress.ndjson | jq -r .digest

Exit status: 0 every image pushed, 1 a push failed (the others still ran), 2 usage or bad input.
`;

await runCli({
  name: 'img-push',
  help: HELP,
  spec: {
    string: ['to', 'chunk-size', 'jobs', ...REGISTRY_FLAGS.string],
    multiple: REGISTRY_FLAGS.multiple,
    boolean: REGISTRY_FLAGS.boolean,
    alias: { j: 'jobs' },
  },
  main: async (ctx) => {
    const jobs = intFlag(ctx.args, 'jobs', 3, 1, 32);
    const chunkText = flag(ctx.args, 'chunk-size');
    const chunkSize = chunkText === undefined ? undefined : parseBytes(chunkText, '--chunk-size');
    if (chunkSize === 0) throw new ConveyorError('ERR_USAGE', '--chunk-size must be more than 0');
    const to = flag(ctx.args, 'to');
    // Flag values checked before the store or the network is touched.
    const clientOptions = registryClientOptions(ctx.args, ctx.env, { userAgent: 'conveyor-img-push', onRetry: (message) => ctx.log.info(message) });
    if (to !== undefined) {
      // A bad --to, or --to with several images, is a usage error before anything is read or sent.
      if (ctx.args._.length > 1) throw new ConveyorError('ERR_USAGE', `--to names one target, but ${ctx.args._.length} images were given`);
      const { parseReference } = await import('@conveyor/lib-common/reference');
      parseReference(to);
    }
    const { Store } = await import('@conveyor/lib-common/store');
    const { pushImage } = await import('./push.js');
    const { MountSources } = await import('./mounts.js');
    const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });

    let client: RegistryClient | undefined;
    const makeClient = async (): Promise<RegistryClient> => {
      if (!client) {
        const { RegistryClient } = await import('@conveyor/registry/client');
        client = new RegistryClient(clientOptions);
      }
      return client;
    };

    const mounts = new MountSources();
    const { pushEach, PUSHABLE_TYPES } = await import('./push-each.js');
    const { argumentItems, readReferences } = await import('@conveyor/lib-common/reference-input');
    const options = {
      push: (ref: string) =>
        pushImage(ref, {
          store,
          client: makeClient,
          to,
          jobs,
          chunkSize,
          mounts,
          // On a terminal, what docker push prints: the reference and its digest.
          write: async (record) => {
            const image = record as { ref: string; digest: string; indexDigest?: string };
            if (ctx.humanOutput) ctx.print(`${image.ref}: digest: ${image.indexDigest ?? image.digest}\n`);
            else await ctx.out.write(record);
          },
          progress: ctx.progress,
          onRetry: (message) => ctx.log.info(message),
          onWait: () => ctx.log.info('waiting for img-prune to finish'),
        }),
      write: (record: Record<string, unknown>) => ctx.out.write(record),
      renaming: to !== undefined,
      info: (message: string) => ctx.log.info(message),
      error: (error: ConveyorError) => ctx.log.error(error),
    };
    try {
      if (ctx.args._.length > 0) return await pushEach(argumentItems(ctx.args._.map(String)), options);
      if (ctx.stdin.isTTY)
        throw new ConveyorError('ERR_USAGE', 'no reference given', {
          hint: 'name an image (img-push localhost:5000/app:1.2) or pipe references in; see --help',
        });
      return await pushEach(readReferences(ctx.stdin, PUSHABLE_TYPES), options);
    } finally {
      client?.close();
    }
  },
});
