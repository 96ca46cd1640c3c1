#!/usr/bin/env node
// The warm-up scripts/build/bundle.mjs runs for each tool: `code-cache.mjs TOOL_DIR` runs the tool's
// bundle as its bin would with `--help`, then writes V8's code cache of the bundle, with the functions
// that run compiled, to TOOL_DIR/bundle/cli.cache (read by lib-common/start.ts). Run with no V8 flags,
// as the bins are (`#!/usr/bin/env -S node --`): V8 rejects a cache made under other flags.
// Failure: exit 1 with the error (the build fails).
import { renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const toolDir = resolve(process.argv[2]);
// The starter the bins run (bundle/start.cjs), so the cache is made by the code that reads it.
const { startTool } = createRequire(import.meta.url)(join(toolDir, 'bundle', 'start.cjs'));
const name = toolDir.split('/').pop();
// What the tool sees: its bin and `--help`.
process.argv = [process.argv[0], join(toolDir, 'bin', `${name}.js`), '--help'];
await startTool(pathToFileURL(`${toolDir}/`), {
  env: process.env,
  stderr: process.stderr,
  // Written whole (renamed into place): the tool may be starting meanwhile.
  warmUp: (cacheFile) =>
    process.once('exit', () => {
      const file = join(toolDir, 'bundle', 'cli.cache');
      writeFileSync(`${file}.${process.pid}.tmp`, cacheFile());
      renameSync(`${file}.${process.pid}.tmp`, file);
    }),
});
