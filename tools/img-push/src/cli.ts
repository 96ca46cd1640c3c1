import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Scaffold: the issue that adds img-push replaces this file.
await runCli({
  name: 'img-push',
  help: 'Usage: img-push [OPTIONS]\n\nPush images from the local store to an OCI or Docker registry.\n',
  main: async () => {
    throw new ConveyorError('ERR_INTERNAL', 'img-push is not built yet');
  },
});
