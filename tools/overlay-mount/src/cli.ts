import { runCli } from '@conveyor/lib-common/cli';
import type { MountOptions } from './mount.js';

const HELP = `Usage: overlay-mount [OPTIONS] < rootfs-records
       overlay-mount --unmount [ID|NAME|PREFIX...] [< mount-records]

Mount an overlayfs of an image's layers plus a writable upper dir for every
\`rootfs\` record on stdin, and print a \`mount\` record for it. The container
directory <store>/containers/<id>/ (id: 64 random hex) holds upper/, work/ and
merged/ (the container's root filesystem). A flattened rootfs (\`dir\`) becomes
the single lower layer, so the flattened tree itself is never written to.
Records of other types pass through unchanged.

Run by a user (rootless), it works inside the user's namespace and the root
is kernel overlayfs with userxattr, else fuse-overlayfs, else a copy of the
layers in upper/ bind-mounted on merged/: the record's \`driver\` says which
(overlay, fuse-overlayfs, copy). CONVEYOR_OVERLAY_DRIVER=NAME forces one, with
no fallback (for tests, or to work around a broken driver).

With --unmount, tear down the overlays of the \`mount\` records on stdin, or
of the containers given as arguments (a 64-hex id, or a container's name or
unique id prefix): unmount, then remove the container
directory. Unmounting what is already gone is not an error; a mount that a
running container uses is refused (ERR_CONTAINER_RUNNING): stop it first.

Options:
      --unmount            unmount and remove instead of mounting
      --links              always name lower dirs by short links in <store>/l
                           (done anyway when the options would exceed a page)
      --root DIR           store root for records without \`store\`
                           (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json
  -q, --quiet              no message per mount on stderr
  -h, --help               show this help
      --version            print the version

Examples:
  img-ls busybox | layer-unpack | overlay-mount | ctr-spawn -- sh
  overlay-mount < rootfs.json > mount.json && overlay-mount --unmount < mount.json
  overlay-mount --unmount 3f4c…(64 hex)
  overlay-mount --unmount web            # the mount the container named web runs on

Exit status: 0 done, 1 a mount or unmount failed (ERR_MOUNT_FAILED) or a container
runs on the mount (ERR_CONTAINER_RUNNING), 2 usage or bad input.
`;

await runCli({
  name: 'overlay-mount',
  help: HELP,
  // Run by a user: inside the store's user namespace (lib-common/rootless), so the next tool that joins it sees the mount.
  userNamespace: true,
  spec: { boolean: ['unmount', 'links'] },
  main: async (ctx) => {
    // Loaded past --help: the mount code brings the store's crypto, locks and processes.
    const [{ DRIVER_ENV, parseDriver }, { isRootless }, { trustedRecordStore }, { mountStream, unmountQuery, unmountStream }] = await Promise.all([
      import('@conveyor/lib-common/overlay/driver'),
      import('@conveyor/lib-common/rootless/detect'),
      import('@conveyor/lib-common/overlay/record-paths'),
      import('./mount.js'),
    ]);
    const options: MountOptions = {
      root: ctx.root,
      forceLinks: Boolean(ctx.args.links),
      onDone: (what, id, path) => ctx.log.info(`${what} ${id.slice(0, 12)} ${what === 'mounted' ? 'at ' : ''}${path}`),
      warn: (message) => ctx.log.warn(message),
      rootless: isRootless(),
      driver: parseDriver(ctx.env[DRIVER_ENV]),
    };
    if (!ctx.args.unmount) {
      if (ctx.args._.length > 0) ctx.log.warn('arguments are ignored when mounting; records are read from stdin');
      await mountStream(ctx.stdin, ctx.out, options);
      return;
    }
    if (ctx.args._.length > 0) {
      const store = await trustedRecordStore({}, ctx.root, { warn: options.warn });
      for (const query of ctx.args._) await unmountQuery(store, query, options);
      return;
    }
    await unmountStream(ctx.stdin, ctx.out, options);
  },
});
