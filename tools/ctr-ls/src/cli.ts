import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Scaffold: the issue that adds ctr-ls replaces this file.
await runCli({
  name: 'ctr-ls',
  help: 'Usage: ctr-ls [OPTIONS]\n\nList containers as NDJSON container records.\n',
  main: async () => {
    throw new ConveyorError('ERR_INTERNAL', 'ctr-ls is not built yet');
  },
});
