/**
 * Plain-text output (issue 17): what a tool prints that is no record (`img-ls -q`, `--refs`, `ctr-ls -q`,
 * `vol-ls -q`) goes out through runCli's ctx.print, as records do (lib-common fd-output.ts): on a pipe
 * or a file no process.stdout is made, so a bundled tool loads neither node:net nor node:stream, and
 * prints what it printed before. (lib-common/test/cli-print.test.ts checks order, a full pipe, EPIPE.)
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout, importToStore } from './helpers/fixtures.js';
import { removeStore, tempStore } from './helpers/rootfs.js';
import { toolPath } from './helpers/tools.js';

/** What a pipe's or a file's process.stdout would load. */
const STREAMS = ['net', 'stream', 'internal/fs/sync_write_stream'];
const PRELOAD =
  "process.on('exit', () => require('node:fs').writeFileSync(process.env.BUILTINS_OUT, process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13)).join('\\n')));\n";

t.test('img-ls -q and --refs, ctr-ls -q, vol-ls -q print their lines without a stdout stream', async (t) => {
  const root = tempStore('conveyor-plain-');
  t.teardown(() => removeStore(root));
  const ref = 'docker.io/library/busybox:latest';
  importToStore(`${busyboxLayout()}:latest`, root, ref);
  const dir = t.testdir();
  writeFileSync(join(dir, 'preload.cjs'), PRELOAD);
  let n = 0;
  /** `tool args > file` or `tool args | cat`: its stdout, exit code, stderr and the builtins it loaded. */
  const traced = (tool: string, args: string[], into: 'pipe' | 'file') => {
    const out = join(dir, `builtins-${n++}`);
    const file = join(dir, `stdout-${n}`);
    const run = spawnSync(
      'bash',
      ['--norc', '--noprofile', '-c', into === 'pipe' ? '"$@" | cat' : '"$@" > "$OUT"', 'bash', process.execPath, toolPath(tool), ...args],
      {
        encoding: 'utf8',
        timeout: 60_000,
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          NODE_OPTIONS: `--require ${join(dir, 'preload.cjs')}`,
          BUILTINS_OUT: out,
          OUT: file,
        },
      },
    );
    const stdout = into === 'pipe' ? run.stdout : readFileSync(file, 'utf8');
    return { code: run.status, stdout, stderr: run.stderr, builtins: readFileSync(out, 'utf8').split('\n') };
  };

  // Each runs from its bundle, as after `make build` (dist/cli.js, an ES module importing CommonJS, loads node:stream itself).
  for (const tool of ['img-ls', 'ctr-ls', 'vol-ls']) {
    const start = spawnSync(process.execPath, [toolPath(tool), '--root', root, '--json'], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, CONVEYOR_START_DEBUG: '1' },
    });
    t.match(start.stderr, /^start: bundle \S+ \(cache accepted\)\n/, `${tool} runs from its bundle`);
  }
  const listed = spawnSync(process.execPath, [toolPath('img-ls'), '--root', root, '--json'], { encoding: 'utf8', timeout: 60_000 });
  const image = JSON.parse(listed.stdout);
  const id = image.configDescriptor.digest.slice('sha256:'.length, 'sha256:'.length + 12);
  // [tool, args, what it prints, whether it loads no stream at all]. vol-ls loads node:net and node:stream anyway:
  // lib-common/container/volumes.ts imports subprocess (node:child_process, for cp and du); its output is checked alone.
  for (const [tool, args, expected, streamless] of [
    ['img-ls', ['-q'], `${id}\n`, true],
    ['img-ls', ['--refs'], `${ref}\n`, true],
    ['ctr-ls', ['-q', '-a'], '', true],
    ['vol-ls', ['-q'], '', false],
  ] as const) {
    for (const into of ['pipe', 'file'] as const) {
      const run = traced(tool, ['--root', root, ...args], into);
      const what = `${tool} ${args.join(' ')} into a ${into}`;
      t.equal(run.code, 0, `${what}: exit 0 (${run.stderr})`);
      t.equal(run.stdout, expected, `${what}: prints ${JSON.stringify(expected)}`);
      t.equal(run.stderr, '', `${what}: nothing on stderr`);
      if (streamless) for (const name of STREAMS) t.notOk(run.builtins.includes(name), `${what}: node:${name} not loaded`);
    }
  }
});
