import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Scaffold: the issue that adds img-prune replaces this file.
await runCli({
  name: 'img-prune',
  help: 'Usage: img-prune [OPTIONS]\n\nGarbage-collect blobs, unpacked layers and unused images from the local store.\n',
  main: async () => {
    throw new ConveyorError('ERR_INTERNAL', 'img-prune is not built yet');
  },
});
