import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Scaffold: issue 14 replaces this file.
await runCli({
  name: 'img-export',
  help: 'Usage: img-export [OPTIONS]\n\nExport images from the local store as docker load archives, OCI archives or OCI layouts, and rootfs tars.\n',
  main: async () => {
    throw new ConveyorError('ERR_INTERNAL', 'img-export is not built yet');
  },
});
