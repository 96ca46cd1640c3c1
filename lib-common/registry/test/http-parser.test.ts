/**
 * The raw-socket path's HTTP/1.1 response parser (src/http-parser.ts),
 * table-driven: heads and their framing, hostile input (oversized heads, bad
 * status lines, negative, non-numeric or conflicting lengths, smuggling
 * pairs, bad chunk sizes) refused with ERR_REGISTRY_PROTOCOL, and every
 * response fed split at every byte boundary decoding to the same body.
 */
import t from 'tap';
import { BodyDecoder, framingOf, HeadParser, MAX_HEAD_BYTES, parseHead, type Framing } from '../src/http-parser.js';

/** Feeds `bytes` in pieces cut at `cuts`; returns the head, the body and whether it completed. */
function parse(bytes: Buffer, cuts: number[] = []): { status: number; framing: Framing; body: string; done: boolean } {
  const heads = new HeadParser();
  let decoder: BodyDecoder | undefined;
  let status = 0;
  let framing: Framing = { kind: 'none' };
  const body: Buffer[] = [];
  let done = false;
  const edges = [0, ...cuts.filter((c) => c > 0 && c < bytes.length), bytes.length];
  for (let i = 0; i + 1 < edges.length && !done; i++) {
    let piece = bytes.subarray(edges[i], edges[i + 1]);
    if (!decoder) {
      const found = heads.push(piece);
      if (!found) continue;
      status = found.head.statusCode;
      framing = framingOf(found.head);
      decoder = new BodyDecoder(framing);
      piece = found.rest;
      done = decoder.done;
    }
    // The views are only valid during the call: copied, as a caller writing them would.
    done = decoder.push(piece, (view) => body.push(Buffer.from(view)));
  }
  if (decoder && !done) done = decoder.end();
  return { status, framing, body: Buffer.concat(body).toString('latin1'), done };
}

const ok = (headers: string, body: string) => Buffer.from(`HTTP/1.1 200 OK\r\n${headers}\r\n${body}`, 'latin1');

t.test('parseHead', async (t) => {
  const cases: [string, unknown][] = [
    ['HTTP/1.1 200 OK\r\nContent-Length: 3', { httpVersion: '1.1', statusCode: 200, statusMessage: 'OK', headers: { 'content-length': '3' } }],
    ['HTTP/1.0 404 Not Found', { httpVersion: '1.0', statusCode: 404, statusMessage: 'Not Found', headers: {} }],
    ['HTTP/1.1 307 ', { statusCode: 307, statusMessage: '', headers: {} }],
    ['HTTP/1.1 204', { statusCode: 204, statusMessage: '', headers: {} }],
    ['HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\nLocation:  /x  ', { statusCode: 200, headers: { 'x-a': '1, 2', location: '/x' } }],
    ['HTTP/1.1 200 OK\r\nSet-Cookie: a\r\nSet-Cookie: b', { headers: { 'set-cookie': ['a', 'b'] } }],
    ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5', { headers: { 'content-length': '5' } }],
  ];
  for (const [text, expected] of cases) t.match(parseHead(text), expected, JSON.stringify(text));
  const bad: [string, RegExp][] = [
    ['HTTP/2 200 OK', /bad status line/],
    ['HTTP/1.1 20 OK', /bad status line/],
    ['HTTP/1.1 099 Low', /bad status line/],
    ['ICY 200 OK', /bad status line/],
    ['', /bad status line/],
    ['HTTP/1.1 200 OK\r\nno colon here', /bad header line/],
    ['HTTP/1.1 200 OK\r\n: empty name', /bad header line/],
    ['HTTP/1.1 200 OK\r\nBad Name: x', /bad header line/],
    ['HTTP/1.1 200 OK\r\nX-A: 1\r\n folded', /folded/],
    ['HTTP/1.1 200 OK\r\nX-A: a\x00b', /control character/],
    ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6', /conflicting Content-Length/],
  ];
  for (const [text, message] of bad) t.throws(() => parseHead(text), { code: 'ERR_REGISTRY_PROTOCOL', message }, JSON.stringify(text));
});

t.test('framingOf', async (t) => {
  const head = (status: number, headers: Record<string, string>) => ({ statusCode: status, statusMessage: '', headers });
  const cases: [number, Record<string, string>, Framing][] = [
    [200, { 'content-length': '42' }, { kind: 'length', length: 42 }],
    [206, { 'content-length': '0' }, { kind: 'length', length: 0 }],
    [200, { 'content-length': '42, 42' }, { kind: 'length', length: 42 }],
    [200, { 'transfer-encoding': 'chunked' }, { kind: 'chunked' }],
    [200, { 'transfer-encoding': 'Chunked' }, { kind: 'chunked' }],
    [200, {}, { kind: 'close' }],
    [204, { 'content-length': '10' }, { kind: 'none' }],
    [304, {}, { kind: 'none' }],
  ];
  for (const [status, headers, expected] of cases) t.strictSame(framingOf(head(status, headers)), expected, `${status} ${JSON.stringify(headers)}`);
  const bad: [Record<string, string>, RegExp][] = [
    [{ 'content-length': '-1' }, /bad Content-Length/],
    [{ 'content-length': '1e3' }, /bad Content-Length/],
    [{ 'content-length': '' }, /bad Content-Length/],
    [{ 'content-length': '42, 43' }, /bad Content-Length/],
    [{ 'content-length': '99999999999999999' }, /bad Content-Length/],
    [{ 'content-length': '0x10' }, /bad Content-Length/],
    [{ 'content-length': '5', 'transfer-encoding': 'chunked' }, /both Transfer-Encoding and Content-Length/],
    [{ 'transfer-encoding': 'gzip, chunked' }, /unsupported Transfer-Encoding/],
    [{ 'transfer-encoding': 'chunked, identity' }, /unsupported Transfer-Encoding/],
  ];
  for (const [headers, message] of bad) t.throws(() => framingOf(head(200, headers)), { code: 'ERR_REGISTRY_PROTOCOL', message }, JSON.stringify(headers));
  // A HEAD's answer has no body, whatever says otherwise; its framing headers are still checked.
  const heads: [number, Record<string, string>][] = [
    [200, { 'content-length': '42' }],
    [200, { 'transfer-encoding': 'chunked' }],
    [200, {}],
    [401, { 'content-length': '120' }],
    [307, {}],
  ];
  for (const [status, headers] of heads) t.strictSame(framingOf(head(status, headers), 'HEAD'), { kind: 'none' }, `HEAD: ${status} ${JSON.stringify(headers)}`);
  for (const [headers, message] of bad)
    t.throws(() => framingOf(head(200, headers), 'HEAD'), { code: 'ERR_REGISTRY_PROTOCOL', message }, `HEAD: ${JSON.stringify(headers)}`);
});

t.test('BodyDecoder.overrun: bytes past a complete body are noticed (the connection is not reused), not handed on', async (t) => {
  const cases: [string, Framing, string[], boolean][] = [
    ['length, exact', { kind: 'length', length: 3 }, ['abc'], false],
    ['length, one read too long', { kind: 'length', length: 3 }, ['abcd'], true],
    ['length, a later read', { kind: 'length', length: 3 }, ['abc', 'x'], true],
    ['chunked, exact', { kind: 'chunked' }, ['3\r\nabc\r\n0\r\n\r\n'], false],
    ['chunked, bytes after the last chunk', { kind: 'chunked' }, ['3\r\nabc\r\n0\r\n\r\nHTTP'], true],
    ['no body, a byte anyway', { kind: 'none' }, ['x'], true],
  ];
  for (const [name, framing, reads, overrun] of cases) {
    const decoder = new BodyDecoder(framing);
    let body = '';
    for (const read of reads) decoder.push(Buffer.from(read, 'latin1'), (view) => (body += view.toString('latin1')));
    t.equal(decoder.overrun, overrun, `${name}: overrun`);
    t.equal(body, framing.kind === 'none' ? '' : 'abc', `${name}: the body alone is handed on`);
  }
});

t.test('responses decode the same whatever the reads look like', async (t) => {
  const cases: { name: string; bytes: Buffer; status: number; body: string; done: boolean }[] = [
    { name: 'content-length', bytes: ok('Content-Length: 5\r\n', 'hello'), status: 200, body: 'hello', done: true },
    { name: 'more than content-length: the rest ignored', bytes: ok('Content-Length: 5\r\n', 'hello, and more'), status: 200, body: 'hello', done: true },
    { name: 'fewer than content-length: incomplete', bytes: ok('Content-Length: 9\r\n', 'hello'), status: 200, body: 'hello', done: false },
    { name: 'empty', bytes: ok('Content-Length: 0\r\n', ''), status: 200, body: '', done: true },
    {
      name: 'chunked',
      bytes: ok('Transfer-Encoding: chunked\r\n', '5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n'),
      status: 200,
      body: 'hello, world',
      done: true,
    },
    {
      name: 'chunked with trailers, bare LF lines',
      bytes: ok('Transfer-Encoding: chunked\r\n', 'A\nabcdefghij\n0\nDigest: x\r\n\r\n'),
      status: 200,
      body: 'abcdefghij',
      done: true,
    },
    { name: 'chunked, cut before its last chunk', bytes: ok('Transfer-Encoding: chunked\r\n', '5\r\nhello\r\n'), status: 200, body: 'hello', done: false },
    { name: 'until close', bytes: ok('', 'all of it'), status: 200, body: 'all of it', done: true },
    {
      name: '100 Continue and 103 first',
      bytes: Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 206 Partial\r\nContent-Length: 2\r\n\r\nab'),
      status: 206,
      body: 'ab',
      done: true,
    },
    { name: 'a 404 with a body', bytes: Buffer.from('HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}'), status: 404, body: '{}', done: true },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      t.match(parse(c.bytes), { status: c.status, body: c.body, done: c.done }, 'in one read');
      let same = 0;
      for (let cut = 1; cut < c.bytes.length; cut++) {
        const got = parse(c.bytes, [cut]);
        if (got.status === c.status && got.body === c.body && got.done === c.done) same++;
        else t.fail(`cut at ${cut}: ${JSON.stringify(got)}`);
      }
      t.equal(same, c.bytes.length - 1, 'split at every byte boundary');
      const bytewise = parse(
        c.bytes,
        Array.from({ length: c.bytes.length }, (_, i) => i),
      );
      t.match(bytewise, { status: c.status, body: c.body, done: c.done }, 'one byte per read');
    });
  }
});

t.test('hostile responses are refused, never waited on', async (t) => {
  const cases: [string, Buffer, RegExp][] = [
    ['a head over the cap', Buffer.from(`HTTP/1.1 200 OK\r\nX-Pad: ${'a'.repeat(MAX_HEAD_BYTES)}\r\n\r\n`), /head larger than/],
    ['a head over the cap, never terminated', Buffer.from(`HTTP/1.1 200 OK\r\nX-Pad: ${'a'.repeat(MAX_HEAD_BYTES + 10)}`), /head larger than/],
    ['not HTTP at all', Buffer.from('SSH-2.0-OpenSSH_9.2\r\n\r\n'), /bad status line/],
    ['101 unasked', Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n'), /101/],
    ['a chunk size that is not hex', ok('Transfer-Encoding: chunked\r\n', 'zz\r\nhello\r\n0\r\n\r\n'), /bad chunk size/],
    ['a negative chunk size', ok('Transfer-Encoding: chunked\r\n', '-5\r\nhello\r\n0\r\n\r\n'), /bad chunk size/],
    ['a chunk size past 2^48', ok('Transfer-Encoding: chunked\r\n', 'fffffffffffff\r\nhello\r\n'), /bad chunk size/],
    ['a chunk longer than its size', ok('Transfer-Encoding: chunked\r\n', '2\r\nhello\r\n0\r\n\r\n'), /chunk longer than its size/],
    ['an endless chunk-size line', ok('Transfer-Encoding: chunked\r\n', `1;${'x'.repeat(5000)}`), /chunk line too long/],
    ['endless trailers', ok('Transfer-Encoding: chunked\r\n', `0\r\n${'X-T: y\r\n'.repeat(3000)}`), /trailers too long/],
  ];
  for (const [name, bytes, message] of cases) {
    t.throws(() => parse(bytes), { code: 'ERR_REGISTRY_PROTOCOL', message }, `${name}, in one read`);
    t.throws(
      () =>
        parse(
          bytes,
          Array.from({ length: 64 }, (_, i) => Math.floor((bytes.length * i) / 64)),
        ),
      { code: 'ERR_REGISTRY_PROTOCOL', message },
      `${name}, in 64 reads`,
    );
  }
});
