import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Scaffold: the issue that adds img-search replaces this file.
await runCli({
  name: 'img-search',
  help: 'Usage: img-search [OPTIONS]\n\nSearch Docker Hub or a registry catalog, and list the tags of a repository, as NDJSON records.\n',
  main: async () => {
    throw new ConveyorError('ERR_INTERNAL', 'img-search is not built yet');
  },
});
