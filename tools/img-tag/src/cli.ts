import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Scaffold: the issue that adds img-tag replaces this file.
await runCli({
  name: 'img-tag',
  help: 'Usage: img-tag [OPTIONS]\n\nAdd a reference to an image in the local store (docker tag).\n',
  main: async () => {
    throw new ConveyorError('ERR_INTERNAL', 'img-tag is not built yet');
  },
});
