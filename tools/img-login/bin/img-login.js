#!/usr/bin/env -S node --
// The bundle (bundle/cli.cjs, `make build`) with its code cache, else dist/cli.js: lib-common/src/start.ts.
import { startTool } from '@conveyor/lib-common/start';

await startTool(new URL('..', import.meta.url), { env: process.env, stderr: process.stderr });
