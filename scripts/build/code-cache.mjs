#!/usr/bin/env node
// The warm-up scripts/build/bundle.mjs runs for each tool: `code-cache.mjs TOOL_DIR [ARG...]` runs the
// tool's body as its bin would with ARGs (a training run of scripts/build/training.mjs, its stdin and
// stdout given by bundle.mjs) or else `--help` (through its head, which lets the body run whatever it
// would answer), then, when the run is over, writes V8's code cache of the body, with the functions
// that ran compiled, to TOOL_DIR/bundle/cli.cache (read by lib-common/start.ts; the head, a few
// kilobytes required by the bin, has none). Run with no V8 flags, as the bins are
// (`#!/usr/bin/env -S node --`): V8 rejects a cache made under other flags.
// A `--help` warm-up of a tool whose package.json has `"conveyor": { "codeCache": "eager" }`
// (ctr-spawn, when its training could not run) gets every function of its body in the cache: V8's
// --no-lazy while the body compiles, --lazy again before it runs, so that the cache is made under the
// flags the bins run with (else V8 rejects it). A trained cache holds what the run compiled: smaller
// than an eager one (0.3 against 0.5 MB for ctr-spawn) and with nothing left to compile on that path.
// Failure: exit 1 with the error (the build fails).
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';

const toolDir = resolve(process.argv[2]);
const training = process.argv.slice(3);
// The head the bins run (bundle/head.cjs), so the cache is made by the code that reads it.
const { start } = createRequire(import.meta.url)(join(toolDir, 'bundle', 'head.cjs'));
const name = toolDir.split('/').pop();
// What the tool sees: its bin and the training's arguments, or `--help`.
process.argv = [process.argv[0], join(toolDir, 'bin', `${name}.js`), ...(training.length ? training : ['--help'])];
const eager = !training.length && JSON.parse(readFileSync(join(toolDir, 'package.json'), 'utf8')).conveyor?.codeCache === 'eager';
await start(pathToFileURL(`${toolDir}/`), {
  env: process.env,
  stderr: process.stderr,
  // As the bins pass theirs: the bundle requires only node: builtins.
  require: createRequire(join(toolDir, 'bundle', 'cli.cjs')),
  // The cache is written whole (renamed into place) at exit: the tool may be starting meanwhile.
  warmUp: {
    compiling: () => {
      if (eager) setFlagsFromString('--no-lazy');
    },
    compiled: (cacheFile) => {
      if (eager) setFlagsFromString('--lazy');
      process.once('exit', () => {
        const file = join(toolDir, 'bundle', 'cli.cache');
        writeFileSync(`${file}.${process.pid}.tmp`, cacheFile());
        renameSync(`${file}.${process.pid}.tmp`, file);
      });
    },
  },
});
