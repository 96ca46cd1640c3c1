import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Scaffold: the issue that adds img-login replaces this file.
await runCli({
  name: 'img-login',
  help: 'Usage: img-login [OPTIONS]\n\nVerify and store registry credentials as docker login does.\n',
  main: async () => {
    throw new ConveyorError('ERR_INTERNAL', 'img-login is not built yet');
  },
});
