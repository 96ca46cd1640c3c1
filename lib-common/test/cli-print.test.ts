/**
 * runCli's ctx.print (issue 17): plain text (a -q line, a table) goes out as records and log lines do
 * (fd-output.ts): in order with them, without making process.stdout on a pipe or file (a pipe's is a
 * net.Socket: node:net; a file's a SyncWriteStream), whole through a pipe that fills, and a reader that
 * leaves early (`| head -1`) ends the run quietly with 0. Runs a small tool on the built lib-common
 * (fixtures/print-tool.mjs; as an ES module importing CommonJS minimist it loads node:stream anyway:
 * test/plain-output.test.ts checks a bundled tool loads neither).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const TOOL = fileURLToPath(new URL('fixtures/print-tool.mjs', import.meta.url));
/** Preloaded: the builtins the tool loaded, written to $BUILTINS_OUT at exit. */
const PRELOAD =
  "process.on('exit', () => require('node:fs').writeFileSync(process.env.BUILTINS_OUT, process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13)).join('\\n')));\n";

/** Runs `script` in bash with $TOOL, $NODE and $DIR set; the tool's builtins are in $DIR/builtins. */
function bash(dir: string, script: string) {
  const run = spawnSync('bash', ['--norc', '--noprofile', '-c', script], {
    encoding: 'utf8',
    timeout: 60_000,
    maxBuffer: 64 << 20,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE: process.execPath,
      TOOL,
      DIR: dir,
      NODE_OPTIONS: `--require ${join(dir, 'preload.cjs')}`,
      BUILTINS_OUT: join(dir, 'builtins'),
    },
  });
  return { ...run, builtins: () => readFileSync(join(dir, 'builtins'), 'utf8').split('\n') };
}

function setUp(dir: string): void {
  writeFileSync(join(dir, 'preload.cjs'), PRELOAD);
}

/** What process.stdout would load on a pipe (net.Socket) or a file (SyncWriteStream). */
const STDOUT_STREAMS = ['net', 'internal/fs/sync_write_stream'];

const lines = (n: number) => Array.from({ length: n }, (_, i) => `line ${i}\n`).join('');

t.test('printed lines, records and log lines keep their order, on one file and on one pipe', async (t) => {
  const dir = t.testdir();
  setUp(dir);
  const expected = Array.from({ length: 3 }, (_, i) => `line ${i}\n{"type":"note","v":1,"n":${i}}\nprint-tool: warning: warning ${i}\n`).join('');
  const toFile = bash(dir, '"$NODE" "$TOOL" --mixed 3 > "$DIR/out" 2>&1');
  t.equal(toFile.status, 0, toFile.stderr);
  t.equal(readFileSync(join(dir, 'out'), 'utf8'), expected, 'a file gets them in the order they were written');
  for (const name of STDOUT_STREAMS) t.notOk(toFile.builtins().includes(name), `node:${name} not loaded`);
  const toPipe = bash(dir, '"$NODE" "$TOOL" --mixed 3 2>&1 | cat');
  t.equal(toPipe.status, 0, toPipe.stderr);
  t.equal(toPipe.stdout, expected, 'a pipe too');
  for (const name of STDOUT_STREAMS) t.notOk(toPipe.builtins().includes(name), `node:${name} not loaded`);
});

t.test('a pipe that fills: every line arrives, in order, and no stream is made', async (t) => {
  const dir = t.testdir();
  setUp(dir);
  // About 250 KB: several times what a pipe holds while its reader sleeps.
  const run = bash(dir, '"$NODE" "$TOOL" 25000 2> "$DIR/err" | (sleep 0.3; cat); echo "$PIPESTATUS" > "$DIR/status"');
  t.equal(run.stdout, lines(25_000), 'all of it, in order');
  t.equal(readFileSync(join(dir, 'status'), 'utf8'), '0\n', 'exit 0');
  t.equal(readFileSync(join(dir, 'err'), 'utf8'), '', 'nothing on stderr');
  for (const name of STDOUT_STREAMS) t.notOk(run.builtins().includes(name), `node:${name} not loaded`);
});

t.test('a reader that leaves early (| head -1): a quiet end with 0', async (t) => {
  const dir = t.testdir();
  setUp(dir);
  const run = bash(dir, '"$NODE" "$TOOL" 100000 2> "$DIR/err" | head -1; echo "exit $PIPESTATUS"');
  t.equal(run.stdout, 'line 0\nexit 0\n', 'the reader got its line; the tool exited 0');
  t.equal(readFileSync(join(dir, 'err'), 'utf8'), '', 'nothing on stderr');
  const mixed = bash(dir, '"$NODE" "$TOOL" --mixed 100000 2> /dev/null | head -1; echo "exit $PIPESTATUS"');
  t.equal(mixed.stdout, 'line 0\nexit 0\n', 'with records between the lines too');
});

t.test('once the stream is asked for, printed lines go through it, after what was printed before', async (t) => {
  const dir = t.testdir();
  setUp(dir);
  const run = bash(dir, '"$NODE" "$TOOL" --stream 2000 | cat');
  t.equal(run.status, 0, run.stderr);
  t.equal(run.stdout, lines(2000), 'all of it, in order');
  const early = bash(dir, '"$NODE" "$TOOL" --stream 100000 2> "$DIR/err" | head -1; echo "exit $PIPESTATUS"');
  t.equal(early.stdout, 'line 0\nexit 0\n', 'a reader leaving early still ends it with 0');
  t.equal(readFileSync(join(dir, 'err'), 'utf8'), '', 'quietly');
});
