/**
 * img-login's pure and stream parts, table-driven: login server arguments
 * (serverRegistry), the password on stdin (readPassword), and the terminal
 * prompt (promptLine) on a fake terminal that records its raw mode: no echo
 * for a password, backspace, Ctrl-C, end of input, and the terminal always
 * restored.
 */
import t from 'tap';
import { PassThrough, Readable } from 'node:stream';
import { serverRegistry } from '@conveyor/registry/credentials';
import { readPassword } from '../src/login.js';
import { promptLine } from '../src/prompt.js';

t.test('serverRegistry', async (t) => {
  const cases: [string | undefined, string][] = [
    [undefined, 'docker.io'],
    ['', 'docker.io'],
    ['docker.io', 'docker.io'],
    ['index.docker.io', 'docker.io'],
    ['https://index.docker.io/v1/', 'docker.io'],
    ['registry-1.docker.io', 'docker.io'],
    ['localhost:5000', 'localhost:5000'],
    ['http://127.0.0.1:5000/v2/', '127.0.0.1:5000'],
    ['https://registry.example.com', 'registry.example.com'],
    ['[::1]:5000', '[::1]:5000'],
  ];
  for (const [input, expected] of cases) t.equal(serverRegistry(input), expected, String(input));
  for (const bad of ['not a host', 'a_b.example.com', 'host:port', '-lead.example.com', 'ftp://']) {
    t.throws(() => serverRegistry(bad), { code: 'ERR_USAGE' }, bad);
  }
});

t.test('readPassword', async (t) => {
  const cases: [string, string][] = [
    ['secret', 'secret'],
    ['secret\n', 'secret'],
    ['secret\r\n', 'secret'],
    ['sec ret\n\n', 'sec ret\n'],
    ['  spaced  ', '  spaced  '],
    ['pässwörd\n', 'pässwörd'],
  ];
  for (const [input, expected] of cases) t.equal(await readPassword(Readable.from([Buffer.from(input)])), expected, JSON.stringify(input));
  for (const bad of ['', '\n', '\r\n']) await t.rejects(readPassword(Readable.from([Buffer.from(bad)])), { code: 'ERR_USAGE' }, JSON.stringify(bad));
  await t.rejects(readPassword(Readable.from([Buffer.alloc(70 * 1024, 'a')])), { code: 'ERR_USAGE' }, 'too long');
});

/** A fake terminal: a stream that records setRawMode calls. */
function terminal(): { input: PassThrough & { isTTY: boolean; setRawMode: (m: boolean) => void }; modes: boolean[] } {
  const modes: boolean[] = [];
  const input = Object.assign(new PassThrough(), { isTTY: true, setRawMode: (m: boolean) => void modes.push(m) });
  return { input, modes };
}

function sink(): { output: PassThrough; text: () => string } {
  const output = new PassThrough();
  let text = '';
  output.on('data', (d: Buffer) => (text += d.toString()));
  return { output, text: () => text };
}

t.test('promptLine', async (t) => {
  const cases: [string[], boolean, string, string][] = [
    [['hunter2\r'], false, 'hunter2', 'Password: \n'],
    [['hun', 'ter2\n'], false, 'hunter2', 'Password: \n'],
    [['hunx\u007fter2\r'], false, 'hunter2', 'Password: \n'],
    [['alice\r'], true, 'alice', 'Password: alice\n'],
    [['alx\u007fice\r'], true, 'alice', 'Password: alx\b \bice\n'],
  ];
  for (const [chunks, echo, expected, shown] of cases) {
    const { input, modes } = terminal();
    const { output, text } = sink();
    const answer = promptLine(input, output, 'Password: ', echo);
    for (const chunk of chunks) input.write(chunk);
    t.equal(await answer, expected, JSON.stringify(chunks));
    t.equal(text(), shown, `${JSON.stringify(chunks)}: what the terminal shows`);
    t.strictSame(modes, [true, false], 'raw mode on, then restored');
  }
  const interrupted = terminal();
  const answer = promptLine(interrupted.input, sink().output, 'Password: ', false);
  interrupted.input.write('abc\u0003');
  await t.rejects(answer, { code: 'ERR_USAGE', message: /interrupted/ });
  t.strictSame(interrupted.modes, [true, false], 'restored after Ctrl-C');
  const ended = terminal();
  const nothing = promptLine(ended.input, sink().output, 'Password: ', false);
  ended.input.end();
  await t.rejects(nothing, { code: 'ERR_USAGE' });
  t.strictSame(ended.modes, [true, false], 'restored at the end of input');
});
