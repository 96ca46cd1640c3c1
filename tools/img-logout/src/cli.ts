import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Scaffold: the issue that adds img-logout replaces this file.
await runCli({
  name: 'img-logout',
  help: 'Usage: img-logout [OPTIONS]\n\nRemove stored registry credentials as docker logout does.\n',
  main: async () => {
    throw new ConveyorError('ERR_INTERNAL', 'img-logout is not built yet');
  },
});
