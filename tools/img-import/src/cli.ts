import { runCli } from '@conveyor/lib-common/cli';
import { flag, parseBytes } from '@conveyor/lib-common/args';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: img-import [OPTIONS] [FILE|-|DIR]

Import images from a \`docker save\` archive (manifest.json; legacy per-layer
directories and Docker 25+ blobs/ both), an OCI image archive (a tar of an OCI
layout, as skopeo's oci-archive: writes) or an OCI layout directory into the
local store, and emit a \`layer\` record per layer and an \`image\` record per
image, as img-fetch does, so \`img-import x.tar | layer-unpack\` works.

Standard input is read when FILE is \`-\`, or absent and stdin is not a
terminal; the archive is streamed member by member, never copied whole.
Every blob is verified (names that are digests, the config's diff IDs) before
anything is stored; a bad archive stores nothing and writes no reference.

Options:
      --ref NAME:TAG       name the image (the only one, or each unnamed one);
                           needed when the archive leaves it unnamed (an OCI
                           archive with a bare tag, a docker save by image ID)
      --platform OS/ARCH   the platform to choose from a multi-platform index (default: the host's)
      --max-blob-size SIZE refuse an archive member declared larger (default 16GiB)
      --no-layers          emit only image records
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json
      --progress MODE      auto (default: bars on a terminal), json, bar or none
  -q, --quiet              no progress, no info messages
  -h, --help               show this help
      --version            print the version

Examples:
  docker save alpine | img-import
  ssh host docker save app:1 | img-import | layer-unpack | ctr-spawn -- true
  skopeo copy docker://busybox oci-archive:bb.tar && img-import --ref busybox:1 bb.tar
  img-import ./oci-layout-dir

Exit status: 0 imported, 1 the archive was refused or the store failed, 2 usage.
`;

await runCli({
  name: 'img-import',
  help: HELP,
  spec: { string: ['ref', 'platform', 'max-blob-size'], boolean: ['layers'], default: { layers: true } },
  main: async (ctx) => {
    if (ctx.args._.length > 1) throw new ConveyorError('ERR_USAGE', 'give one archive or directory');
    const source = ctx.args._.length === 1 ? String(ctx.args._[0]) : '-';
    if (source === '-' && ctx.stdin.isTTY) {
      throw new ConveyorError('ERR_USAGE', 'no archive given and stdin is a terminal', { hint: 'img-import FILE, or docker save IMAGE | img-import' });
    }
    const ref = flag(ctx.args, 'ref');
    const { normalizeReference } = await import('@conveyor/lib-common/reference');
    if (ref !== undefined) normalizeReference(ref);
    const maxText = flag(ctx.args, 'max-blob-size') ?? ctx.env.CONVEYOR_MAX_BLOB_SIZE;
    const maxSize = maxText ? parseBytes(maxText, '--max-blob-size') : 16 * 1024 ** 3;
    if (maxSize <= 0) throw new ConveyorError('ERR_USAGE', '--max-blob-size must be more than 0');
    const { hostPlatform, parsePlatform } = await import('@conveyor/lib-common/platform');
    const platformText = flag(ctx.args, 'platform');
    const platform = platformText ? parsePlatform(platformText) : hostPlatform();

    const { Store } = await import('@conveyor/lib-common/store');
    const { Staging } = await import('./stage.js');
    const { importStaged } = await import('./import.js');
    const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });
    await store.init();
    const staging = new Staging({
      store,
      maxSize,
      onProgress: ({ id, current, total, phase }) => {
        const event = { id, action: 'import', current, total, label: id };
        if (phase === 'start') ctx.progress.start(event);
        else if (phase === 'update') ctx.progress.update(event);
        else ctx.progress.done(event);
      },
    });
    try {
      if (source === '-') {
        await staging.fromTar(ctx.stdin);
      } else {
        const { createReadStream } = await import('node:fs');
        const { stat } = await import('node:fs/promises');
        const info = await stat(source).catch(() => {
          throw new ConveyorError('ERR_USAGE', `${source}: no such file or directory`);
        });
        if (info.isDirectory()) await staging.fromDirectory(source);
        else await staging.fromTar(createReadStream(source));
      }
      await importStaged(staging, {
        store,
        ref,
        platform,
        platformExplicit: platformText !== undefined,
        emitLayers: ctx.args.layers !== false,
        write: (record) => ctx.out.write(record),
        warn: (message) => ctx.log.warn(message),
      });
    } finally {
      await staging.discard();
    }
  },
});
