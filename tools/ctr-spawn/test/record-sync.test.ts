/**
 * The record read without readLines (issue 17): from a file with readSync (firstRecordSync) and from a
 * stream by its chunks (firstRecord), both through record.ts's RecordScanner. For every input of the
 * table each takes the record that ctr-spawn's reader before them (readLines and split2, kept here as
 * the reference) took, says the same warnings, fails with the same code naming the same `stdin:N`, and
 * passes on the same upstream `error` records; read in one chunk and in 5-byte chunks (lines and a
 * UTF-8 character split across reads). And the built ctr-spawn run with stdin redirected from a file
 * (the path it takes) runs the record, and a bad or missing one leaves nothing behind.
 */
import t from 'tap';
import { closeSync, createReadStream, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConveyorError } from '@conveyor/lib-common/errors';
import { readLines } from '@conveyor/lib-common/ndjson';
import { Pipeline } from '@conveyor/lib-common/pipeline';
import type { Readable } from 'node:stream';
import { firstRecord, firstRecordSync } from '../src/record.js';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { toolPath } from '../../../test/helpers/tools.js';
import { containerDirs, mountsUnder } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'conveyor-record-sync-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const rootfs = { type: 'rootfs', v: 1, layerDirs: ['/x'], ref: 'héllo:latest' };
const mount = { type: 'mount', v: 1, id: 'a'.repeat(64) };
const layer = { type: 'layer', v: 1 };
const upstream = { type: 'error', v: 1, code: 'ERR_NOT_FOUND', message: 'no such image', exitCode: 4, tool: 'img-fetch' };
const line = (record: object) => `${JSON.stringify(record)}\n`;

/** ctr-spawn's reader before issue 17's: readLines (split2), the first rootfs or mount record. The reference. */
async function readLinesFirstRecord(input: Readable, log: { warn: (m: string) => void }, failures: Pipeline): Promise<Record<string, unknown>> {
  for await (const { record, source, line } of readLines(input, { pipeline: failures })) {
    if (record?.type === 'rootfs' || record?.type === 'mount') return record;
    log.warn(`${source}:${line}: skipping a ${JSON.stringify(record?.type)} record: ctr-spawn runs rootfs and mount records`);
  }
  throw failures.nothingButUpstreamFailure() ?? Object.assign(new Error('no rootfs or mount record on input'), { code: 'ERR_INPUT_RECORD' });
}

interface Outcome {
  record?: Record<string, unknown>;
  code?: string;
  message?: string;
  warnings: string[];
  passed: unknown[];
}

async function outcome(read: (failures: Pipeline, log: { warn: (m: string) => void }) => Promise<Record<string, unknown>>): Promise<Outcome> {
  const warnings: string[] = [];
  const passed: unknown[] = [];
  const failures = new Pipeline();
  failures.attach({ tool: 'ctr-spawn', sink: { write: async (r) => void passed.push(r) } });
  try {
    const record = await read(failures, { warn: (m) => warnings.push(m) });
    return { record, warnings, passed };
  } catch (error) {
    const err = error as ConveyorError;
    return { code: err.code, message: err.message, warnings, passed };
  }
}

const cases: { name: string; input: string; expect: { type?: string; code?: string; message?: RegExp } }[] = [
  { name: 'one record', input: line(rootfs), expect: { type: 'rootfs' } },
  { name: 'no newline at the end', input: JSON.stringify(rootfs), expect: { type: 'rootfs' } },
  { name: 'blank lines and CRLF first', input: `\n  \r\n${JSON.stringify(mount)}\r\n`, expect: { type: 'mount' } },
  { name: 'a record of another type first: skipped with a warning', input: line(layer) + line(rootfs), expect: { type: 'rootfs' } },
  { name: 'a second record (and garbage) after the first: never read', input: line(rootfs) + line(mount) + 'not json\n', expect: { type: 'rootfs' } },
  {
    name: 'bad JSON before the record',
    input: `${line(layer)}{"type": nope}\n${line(rootfs)}`,
    expect: { code: 'ERR_INPUT_JSON', message: /^stdin:2: not valid JSON/ },
  },
  { name: 'bad JSON as the last line without newline', input: `${line(layer)}{`, expect: { code: 'ERR_INPUT_JSON', message: /^stdin:2: not valid JSON/ } },
  { name: 'not an object', input: '[1,2]\n', expect: { code: 'ERR_INPUT_JSON', message: /^stdin:1: expected a JSON object/ } },
  { name: 'a bare word', input: 'busybox\n', expect: { code: 'ERR_INPUT_JSON', message: /^stdin:1:/ } },
  { name: 'nested too deep', input: `${'['.repeat(600)}${']'.repeat(600)}\n`, expect: { code: 'ERR_INPUT_JSON', message: /^stdin:1: JSON nested deeper/ } },
  { name: 'empty input', input: '', expect: { code: 'ERR_INPUT_RECORD', message: /no rootfs or mount record/ } },
  { name: 'EOF after other records only', input: line(layer) + '\n', expect: { code: 'ERR_INPUT_RECORD' } },
  {
    name: 'only an upstream failure: passed on, its code',
    input: line(upstream),
    expect: { code: 'ERR_UPSTREAM_FAILED', message: /img-fetch failed upstream/ },
  },
  { name: 'an upstream failure, then a record', input: line(upstream) + line(rootfs), expect: { type: 'rootfs' } },
];

t.test('firstRecordSync and firstRecord read what readLines read, errors and all', async (t) => {
  for (const [index, c] of cases.entries()) {
    const path = join(dir, `case-${index}`);
    writeFileSync(path, c.input);
    const reference = await outcome((failures, log) => readLinesFirstRecord(createReadStream(path), log, failures));
    if (reference.code === 'ERR_INPUT_RECORD') reference.message = 'no rootfs or mount record on input';
    for (const chunkBytes of [64 * 1024, 5]) {
      const fd = openSync(path, 'r');
      const read = await outcome((failures, log) => firstRecordSync(fd, log, { pipeline: failures, chunkBytes })).finally(() => closeSync(fd));
      const streamed = await outcome((failures, log) => firstRecord(createReadStream(path, { highWaterMark: chunkBytes }), log, { pipeline: failures }));
      for (const [how, got] of [
        ['readSync', read],
        ['stream', streamed],
      ] as const) {
        const name = `${c.name} (${how}, chunks of ${chunkBytes})`;
        t.strictSame(got, reference, `${name}: as readLines`);
        if (c.expect.type) t.equal(got.record?.type, c.expect.type, name);
        if (c.expect.code) t.equal(got.code, c.expect.code, name);
        if (c.expect.message) t.match(got.message, c.expect.message, name);
      }
    }
  }
});

t.test('firstRecord: a stream that fails is bad input naming the line being read', async (t) => {
  const { PassThrough } = await import('node:stream');
  const input = new PassThrough();
  input.write(line(layer));
  input.write('{"type":');
  setImmediate(() => input.destroy(new Error('boom')));
  const read = await outcome((failures, log) => firstRecord(input, log, { pipeline: failures }));
  t.equal(read.code, 'ERR_INPUT_JSON');
  t.match(read.message, /^stdin:2: cannot read input: boom/);
  t.match(read.warnings, [/^stdin:1: skipping a "layer" record/]);
});

t.test('the UTF-8 of a line split across reads, a warning naming its line, an error record passed on', async (t) => {
  const path = join(dir, 'mixed');
  writeFileSync(path, line(upstream) + line(layer) + line(rootfs));
  const fd = openSync(path, 'r');
  t.teardown(() => closeSync(fd));
  const read = await outcome((failures, log) => firstRecordSync(fd, log, { pipeline: failures, chunkBytes: 3 }));
  t.equal(read.record?.ref, 'héllo:latest');
  t.match(read.warnings, [/^stdin:2: skipping a "layer" record/]);
  t.match(read.passed, [{ type: 'error', tool: 'img-fetch', exitCode: 4 }]);
});

t.test('a line longer than the limit is bad input naming its line, ended or not', async (t) => {
  for (const input of [`${line(layer)}${'x'.repeat(100)}\n`, `${line(layer)}${'x'.repeat(100)}`]) {
    const path = join(dir, 'long');
    writeFileSync(path, input);
    for (const chunkBytes of [8, 4096]) {
      const fd = openSync(path, 'r');
      const read = await outcome((failures, log) => firstRecordSync(fd, log, { pipeline: failures, chunkBytes, maxLineBytes: 64 })).finally(() =>
        closeSync(fd),
      );
      const streamed = await outcome((failures, log) =>
        firstRecord(createReadStream(path, { highWaterMark: chunkBytes }), log, { pipeline: failures, maxLineBytes: 64 }),
      );
      for (const got of [read, streamed]) {
        t.equal(got.code, 'ERR_INPUT_JSON');
        t.match(got.message, /^stdin:2: line longer than 64 bytes/);
      }
    }
  }
});

t.test('the built ctr-spawn with stdin from a file: runs its record; bad, missing or unreadable input leaves nothing', async (t) => {
  const root = tempStore('conveyor-ctrsync-');
  t.teardown(() => removeStore(root));
  const record = busyboxRootfs(root, 'latest');
  const run = (input: string, args: string[] = []) => {
    const path = join(dir, 'stdin');
    writeFileSync(path, input);
    const fd = openSync(path, 'r');
    try {
      const r = spawnSync(process.execPath, [toolPath('ctr-spawn'), '--net', 'none', ...args], { stdio: [fd, 'pipe', 'pipe'], encoding: 'utf8' });
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    } finally {
      closeSync(fd);
    }
  };
  const ok = run(`\n${line(layer)}${line(record)}`, ['--', 'echo', 'from a file']);
  t.equal(ok.code, 0, ok.stderr);
  t.equal(ok.stdout, 'from a file\n');
  t.match(ok.stderr, /stdin:2: skipping a "layer" record/);
  const recordFile = join(dir, 'record.json');
  writeFileSync(recordFile, line(record));
  const fromRecord = run('', ['--record', recordFile, '--', 'echo', 'from --record']);
  t.equal(fromRecord.code, 0, fromRecord.stderr);
  t.equal(fromRecord.stdout, 'from --record\n');
  for (const [input, args, said] of [
    ['{"type":\n', [], /stdin:1: not valid JSON/],
    ['', [], /no rootfs or mount record/],
    [line({ ...record, layerDirs: ['/etc'] }), [], /layer directory "\/etc" is not/],
    ['', ['--record', join(dir, 'missing.json')], /cannot read --record/],
  ] as [string, string[], RegExp][]) {
    const r = run(input, [...args, '--', 'echo', 'never']);
    t.equal(r.code, 125, `${said}: ${r.stderr}`);
    t.equal(r.stdout, '', 'nothing ran');
    t.match(r.stderr, said);
  }
  t.strictSame(containerDirs(root), [], 'no container dir left');
  t.strictSame(mountsUnder(root), [], 'nothing mounted');
});
