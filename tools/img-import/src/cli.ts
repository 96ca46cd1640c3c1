import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Scaffold: issue 14 replaces this file.
await runCli({
  name: 'img-import',
  help: 'Usage: img-import [OPTIONS]\n\nImport images from docker save archives, OCI archives and OCI layouts into the local store.\n',
  main: async () => {
    throw new ConveyorError('ERR_INTERNAL', 'img-import is not built yet');
  },
});
