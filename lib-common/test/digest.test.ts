import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chainIDs, JS_HASH_BUDGET, randomHex, sha256, sha256Js } from '../src/digest.js';

const run = promisify(execFile);
const nodeHex = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

t.test('sha256Js: FIPS 180-4 examples and the empty message', async (t) => {
  const cases: [string, string][] = [
    ['', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    ['abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1'],
  ];
  for (const [text, hex] of cases) t.equal(sha256Js(Buffer.from(text)), hex, JSON.stringify(text));
});

t.test('sha256Js equals node:crypto at every padding boundary and on random data', async (t) => {
  // Lengths around the 55/56 and 63/64 byte edges of one and two blocks, then larger ones.
  const lengths = [...Array.from({ length: 200 }, (_, i) => i), 1000, 4095, 4096, 65_537, 1 << 20];
  const wrong = lengths.filter((n) => {
    const data = randomBytes(n);
    return sha256Js(data) !== nodeHex(data);
  });
  t.strictSame(wrong, [], 'no length differs');
});

t.test('sha256 gives node:crypto digests below and above the JavaScript budget, for strings as UTF-8', async (t) => {
  const inputs: (Buffer | string)[] = ['sha256:aa sha256:bb', 'ünïcödé ✓ 🐳', randomBytes(100), randomBytes(JS_HASH_BUDGET + 1), randomBytes(300)];
  for (const input of inputs) t.equal(sha256(input), `sha256:${nodeHex(input)}`);
  const a = `sha256:${'a'.repeat(64)}`;
  const b = `sha256:${'b'.repeat(64)}`;
  t.strictSame(chainIDs([a, b]), [a, `sha256:${nodeHex(`${a} ${b}`)}`]);
  t.match(randomHex(8), /^[0-9a-f]{16}$/);
  t.not(randomHex(8), randomHex(8));
});

t.test('hashing small inputs and randomHex load no node:crypto; a large input does', async (t) => {
  const digest = fileURLToPath(new URL('../dist/digest.js', import.meta.url));
  const script = (body: string) => `import('${digest}').then((d) => { ${body}; console.log(process.moduleLoadList.includes('NativeModule crypto')); })`;
  const dir = t.testdir();
  let n = 0;
  // A script file (`node -e` loads node:crypto itself), in a clean environment (the runner's NODE_OPTIONS preloads it too).
  const loaded = async (body: string) => {
    const file = join(dir, `probe-${n++}.mjs`);
    writeFileSync(file, script(body));
    return (await run(process.execPath, [file], { env: { PATH: process.env.PATH } })).stdout.trim();
  };
  t.equal(await loaded("d.sha256('x'.repeat(2000)); d.chainIDs(['sha256:' + 'a'.repeat(64), 'sha256:' + 'b'.repeat(64)])"), 'false');
  t.equal(await loaded(`d.sha256(Buffer.alloc(${JS_HASH_BUDGET + 1}))`), 'true');
  // randomHex reads /dev/urandom: a container's start (its id, temporary names) loads no node:crypto.
  t.equal(await loaded('const h = d.randomHex(32); if (!/^[0-9a-f]{64}$/.test(h)) throw new Error(h)'), 'false');
});
