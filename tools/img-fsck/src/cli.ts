import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Placeholder: img-fsck is being built (issue 16).
await runCli({
  name: 'img-fsck',
  help: 'Usage: img-fsck [--repair]\n\nnot built yet\n',
  main: async () => {
    throw new ConveyorError('ERR_USAGE', 'img-fsck: not built yet');
  },
});
