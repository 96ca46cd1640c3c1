/**
 * Failures travel down the pipe (docs/protocol.md, `error`): the pipelines
 * verbatim under bash with pipefail, the tools on PATH as `make install` puts
 * them, a real registry (and one that is down), forged error records on
 * stdin, a relative --root end to end, and the terminal hint under script(1).
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout, REPO_ROOT } from './helpers/fixtures.js';
import { freePort, pushImage, startRegistry } from './helpers/registry.js';
import { removeStore, tempStore } from './helpers/rootfs.js';
import { jsonLines, toolPath } from './helpers/tools.js';

interface Shell {
  code: number;
  stdout: string;
  stderr: string;
}

const root = tempStore('conveyor-pipefail-');
t.teardown(() => removeStore(root));
const base = join(root, '..');
const bin = join(base, 'bin');
const work = join(base, 'work');
mkdirSync(bin);
mkdirSync(work);
for (const tool of readdirSync(join(REPO_ROOT, 'tools'))) if (existsSync(toolPath(tool))) symlinkSync(toolPath(tool), join(bin, tool));
const env = { PATH: `${bin}:${process.env.PATH}`, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config', CONVEYOR_ROOT: root };

/** A command line run by bash with pipefail, as a cron script would. */
function sh(line: string, extraEnv: NodeJS.ProcessEnv = {}): Promise<Shell> {
  return new Promise((resolve) => {
    execFile('bash', ['-o', 'pipefail', '-c', line], { env: { ...env, ...extraEnv }, cwd: work, maxBuffer: 1 << 26 }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** stderr's lines, none empty. */
const lines = (text: string) => text.split('\n').filter((l) => l !== '');

const registry = await startRegistry();
t.teardown(() => registry.stop());
await pushImage(`${busyboxLayout()}:latest`, registry, 'library/busybox:latest');
const busybox = `${registry.host}/library/busybox:latest`;
const downPort = await freePort();

t.test('a registry that is down: the pipeline exits 1 with one error line, from img-fetch', async (t) => {
  const r = await sh(`img-fetch 127.0.0.1:${downPort}/nope | layer-unpack | ctr-spawn -- true`);
  t.equal(r.code, 1, 'not 125: the container was never the problem');
  t.equal(lines(r.stderr).length, 1, `one line: ${r.stderr}`);
  t.match(r.stderr, /^img-fetch: cannot reach registry 127\.0\.0\.1:\d+/);
  // ctr-spawn's stdout is the container's: the record reaches it, whether it writes it there is its ToolDefinition's choice.
  t.ok(
    jsonLines(r.stdout).every((record) => record.type === 'error'),
    'nothing but the error record, if anything',
  );
  const tail = await sh(`img-fetch 127.0.0.1:${downPort}/nope | layer-unpack | overlay-mount`);
  t.equal(tail.code, 1);
  t.match(jsonLines(tail.stdout), [{ type: 'error', code: 'ERR_REGISTRY_UNAVAILABLE', tool: 'img-fetch', exitCode: 1 }], 'passed through to the end');
});

t.test('an unknown repository and an unknown flag: the exit codes travel as they are', async (t) => {
  const missing = await sh(`img-fetch ${registry.host}/nope | layer-unpack | overlay-mount | ctr-spawn -d`);
  t.equal(missing.code, 1);
  t.equal(lines(missing.stderr).length, 1, missing.stderr);
  t.match(missing.stderr, /^img-fetch: /);
  t.match(jsonLines(missing.stdout), [{ code: 'ERR_REGISTRY_NOT_FOUND', tool: 'img-fetch' }]);

  const usage = await sh('img-fetch --bogus | layer-unpack | ctr-spawn -- true');
  t.equal(usage.code, 2, 'a usage error upstream is exit 2 at the end too');
  t.equal(lines(usage.stderr).length, 1, usage.stderr);
  t.match(usage.stderr, /^img-fetch: /);
});

t.test('one reference of several fails: the others still run, the error record follows them, exit 1', async (t) => {
  const r = await sh(`img-fetch -q ${busybox} ${registry.host}/nope | layer-unpack | jq -c '{type, code}'`);
  t.equal(r.code, 1);
  t.strictSame(
    jsonLines(r.stdout),
    [
      { type: 'rootfs', code: null },
      { type: 'error', code: 'ERR_REGISTRY_NOT_FOUND' },
    ],
    'the image is unpacked and the failure is in its place',
  );
  t.equal(lines(r.stderr).length, 1, r.stderr);
  // Without pipefail the last tool says it: layer-unpack ends with img-fetch's code.
  const last = await sh(`set +o pipefail; img-fetch -q ${busybox} ${registry.host}/nope | layer-unpack >/dev/null`);
  t.equal(last.code, 1);
});

t.test('the control plane: a container that is not there is an error record for the next tool', async (t) => {
  const r = await sh('ctr-rm no-such-container | ctr-kill');
  t.equal(r.code, 1);
  t.equal(lines(r.stderr).length, 1, r.stderr);
  t.match(r.stderr, /^ctr-rm: /);
  t.match(jsonLines(r.stdout), [{ type: 'error', code: 'ERR_CONTAINER_NOT_FOUND', tool: 'ctr-rm' }]);
});

t.test('a failure of its own downstream is said, and the first failure in the pipe is the exit code', async (t) => {
  // layer-unpack fails on a forged line after the upstream failure: both are said, the upstream's code wins.
  const r = await sh(`(img-fetch 127.0.0.1:${downPort}/nope; echo '{"type":"image"}') | layer-unpack`);
  t.equal(r.code, 1, 'img-fetch failed first');
  t.equal(lines(r.stderr).length, 2, r.stderr);
  t.match(lines(r.stderr)[1], /^layer-unpack: stdin:2: /);
  t.match(jsonLines(r.stdout), [{ tool: 'img-fetch' }, { tool: 'layer-unpack', code: 'ERR_INPUT_RECORD', exitCode: 2, where: undefined }]);
});

// [what is piped in, the exit code, what the passed-on record must match]
const forged: [string, string, number, Record<string, unknown>][] = [
  ['exit code out of range', '{"type":"error","exitCode":99999,"message":"x"}', 1, { exitCode: 1, tool: 'unknown', code: 'ERR_INTERNAL' }],
  ['exit code as a string', '{"type":"error","exitCode":"7","message":"x"}', 1, { exitCode: 1 }],
  ['exit code 0', '{"type":"error","exitCode":0}', 1, { exitCode: 1 }],
  ['a chosen exit code', '{"type":"error","exitCode":42,"tool":"cron","code":"ERR_X"}', 42, { exitCode: 42, tool: 'cron', code: 'ERR_X' }],
  ['escape sequences', '{"type":"error","exitCode":3,"message":"\\u001b]0;pwned\\u0007","tool":"\\u001b[2J"}', 3, { tool: 'unknown' }],
];
for (const [i, [name, line, code, expected]] of forged.entries()) {
  t.test(`a forged error record (${name}) is checked, passed on, and said nothing about`, async (t) => {
    // Every reader for the first case; the two ends of the pipeline for the rest (each run is a Node start-up).
    const tools =
      i === 0 ? ['ctr-spawn -- true', 'layer-unpack', 'overlay-mount', 'img-fetch', 'ctr-rm', 'ctr-logs', 'img-rm'] : ['layer-unpack', 'ctr-spawn -d'];
    for (const tool of tools) {
      const r = await sh(`printf '%s\\n' '${line}' | ${tool}`);
      t.equal(r.code, code, `${tool}: exit ${code}`);
      t.equal(r.stderr, '', `${tool}: silent`);
      // A foreground container's output and ctr-logs' text are not records: nothing is added to them.
      if (tool.startsWith('ctr-spawn --') || tool === 'ctr-logs') t.equal(r.stdout, '', `${tool}: nothing on its stdout`);
      else t.match(jsonLines(r.stdout), [{ type: 'error', v: 1, ...expected }], `${tool}: passed on`);
    }
  });
}

t.test('a huge forged message is cut, never a crash', async (t) => {
  const r = await sh(`python3 -c 'import json; print(json.dumps({"type":"error","exitCode":5,"message":"m"*5000000}))' | layer-unpack | ctr-spawn -d`);
  t.equal(r.code, 5);
  t.equal(r.stderr, '');
  const [record] = jsonLines(r.stdout);
  t.ok(record.message.length < 3000, `cut to ${record.message.length} characters`);
});

t.test('a relative --root or CONVEYOR_ROOT is made absolute before it goes into records', async (t) => {
  t.teardown(() => {
    rmSync(join(work, 'cold'), { recursive: true, force: true });
    rmSync(join(work, 'warm'), { recursive: true, force: true });
  });
  const flags = await sh(`img-fetch --root cold ${busybox} | layer-unpack --root cold | ctr-spawn --root cold -- echo hi`);
  t.equal(flags.code, 0, flags.stderr);
  t.equal(flags.stdout, 'hi\n');
  const envRoot = await sh(`img-fetch ${busybox} | layer-unpack`, { CONVEYOR_ROOT: 'warm' });
  t.equal(envRoot.code, 0, envRoot.stderr);
  t.match(jsonLines(envRoot.stdout), [{ type: 'rootfs', store: join(work, 'warm') }]);
});

t.test('a tool waiting for records on a terminal says so once (script(1) gives it one)', async (t) => {
  for (const tool of ['layer-unpack', 'ctr-spawn -- true', 'overlay-mount']) {
    const r = await sh(`script -qec '${tool}' /dev/null < /dev/null`);
    const said = lines(r.stdout.replace(/\r/g, '')).filter((l) => l.includes('reading records from stdin'));
    t.strictSame(said, [`${tool.split(' ')[0]}: reading records from stdin; pipe img-fetch into me, or Ctrl-D`], tool);
  }
  const piped = await sh('layer-unpack < /dev/null');
  t.equal(piped.stderr, '', 'not when stdin is no terminal');
  const quiet = await sh(`script -qec 'layer-unpack -q' /dev/null < /dev/null`);
  t.notMatch(quiet.stdout, /reading records/, '-q keeps it quiet');
});
