import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Scaffold: the issue that adds img-rm replaces this file.
await runCli({
  name: 'img-rm',
  help: 'Usage: img-rm [OPTIONS]\n\nRemove image references from the local store.\n',
  main: async () => {
    throw new ConveyorError('ERR_INTERNAL', 'img-rm is not built yet');
  },
});
