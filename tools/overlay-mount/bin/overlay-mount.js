#!/usr/bin/env -S node --
// CommonJS (bin/package.json): an ES module as the main entry would cost Node's module loader at each start.
// The bundle's head (bundle/head.cjs, `make build`; lib-common/src/start.ts) answers --help and --version and
// starts the body for anything else; without a bundle (a tsc-only build), dist/cli.js.
let head;
try {
  head = require('../bundle/head.cjs');
} catch {
  if (process.env.CONVEYOR_START_DEBUG === '1') process.stderr.write(`start: dist ${__dirname}/../dist/cli.js (no bundle)\n`);
  import(require('node:url').pathToFileURL(`${__dirname}/../dist/cli.js`).href);
}
// stderr is a getter: process.stderr is a stream made on first use, which a start that says nothing need not pay for.
// require is the body's (it requires only node: builtins, which any require resolves).
head?.start(require('node:url').pathToFileURL(`${__dirname}/../`), {
  env: process.env,
  get stderr() {
    return process.stderr;
  },
  require,
});
