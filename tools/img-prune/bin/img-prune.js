#!/usr/bin/env -S node --
// CommonJS (bin/package.json): an ES module as the main entry would cost Node's module loader at each start.
// The bundle with its code cache (bundle/, `make build`; lib-common/src/start.ts), else dist/cli.js (a tsc-only build).
const { pathToFileURL } = require('node:url');
let start;
try {
  start = require('../bundle/start.cjs');
} catch {
  if (process.env.CONVEYOR_START_DEBUG === '1') process.stderr.write(`start: dist ${__dirname}/../dist/cli.js (no bundle)\n`);
  import(pathToFileURL(`${__dirname}/../dist/cli.js`).href);
}
// stderr is a getter: process.stderr is a stream made on first use, which a start that says nothing need not pay for.
// require is the bundle's (it requires only node: builtins, which any require resolves).
start?.startTool(pathToFileURL(`${__dirname}/../`), {
  env: process.env,
  get stderr() {
    return process.stderr;
  },
  require,
});
