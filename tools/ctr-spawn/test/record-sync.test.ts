/**
 * The record read from a file without a stream (record.ts firstRecordSync, issue 17): for every input
 * of the table it takes the record the stream reader (firstRecord: readLines and split2) takes, says
 * the same warnings, fails with the same code naming the same `stdin:N`, and passes on the same
 * upstream `error` records; read in one chunk and in 5-byte chunks (lines and a UTF-8 character split
 * across reads). And the built ctr-spawn run with stdin redirected from a file (the path it takes) runs
 * the record, and a bad or missing one leaves nothing behind.
 */
import t from 'tap';
import { closeSync, createReadStream, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConveyorError } from '@conveyor/lib-common/errors';
import { Pipeline } from '@conveyor/lib-common/pipeline';
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

t.test('firstRecordSync reads what firstRecord reads, errors and all', async (t) => {
  for (const [index, c] of cases.entries()) {
    const path = join(dir, `case-${index}`);
    writeFileSync(path, c.input);
    const streamed = await outcome((failures, log) => firstRecord(createReadStream(path), log, failures));
    for (const chunkBytes of [64 * 1024, 5]) {
      const fd = openSync(path, 'r');
      const read = await outcome((failures, log) => firstRecordSync(fd, log, { pipeline: failures, chunkBytes })).finally(() => closeSync(fd));
      const name = `${c.name} (chunks of ${chunkBytes})`;
      t.strictSame(read, streamed, `${name}: as the stream reader`);
      if (c.expect.type) t.equal(read.record?.type, c.expect.type, name);
      if (c.expect.code) t.equal(read.code, c.expect.code, name);
      if (c.expect.message) t.match(read.message, c.expect.message, name);
    }
  }
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
      t.equal(read.code, 'ERR_INPUT_JSON');
      t.match(read.message, /^stdin:2: line longer than 64 bytes/);
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
