/**
 * lib-common/ip's isIP answers as node:net's (whose regular expressions it copies): on a table of
 * addresses and near misses, hostile ones included, and on random strings of the characters addresses use.
 */
import t from 'tap';
import { isIP as nodeIsIP } from 'node:net';
import { isIP } from '@conveyor/lib-common/ip';

t.test('the same answers as node:net on a table', async (t) => {
  // [input, expected]
  const cases: [string, 0 | 4 | 6][] = [
    ['127.0.0.1', 4],
    ['0.0.0.0', 4],
    ['255.255.255.255', 4],
    ['10.0.0.5', 4],
    ['256.0.0.1', 0],
    ['01.2.3.4', 0],
    ['1.2.3', 0],
    ['1.2.3.4.5', 0],
    ['1.2.3.4 ', 0],
    [' 1.2.3.4', 0],
    ['1.2.3.4\n', 0],
    ['1.2.3.-4', 0],
    ['١.٢.٣.٤', 0],
    ['::', 6],
    ['::1', 6],
    ['1::', 6],
    ['fe80::1%eth0', 6],
    ['fe80::1%', 0],
    ['2001:db8::8a2e:370:7334', 6],
    ['2001:0db8:0000:0000:0000:ff00:0042:8329', 6],
    ['::ffff:192.168.1.1', 6],
    ['::ffff:192.168.1.256', 0],
    ['1:2:3:4:5:6:7:8:9', 0],
    ['1:2:3:4:5:6:7', 0],
    ['12345::', 0],
    ['[::1]', 0],
    [':::', 0],
    ['g::1', 0],
    ['', 0],
    ['localhost', 0],
    ['host-gateway', 0],
    [`${'1.'.repeat(5000)}1`, 0],
    [`${'1:'.repeat(5000)}1`, 0],
  ];
  for (const [input, expected] of cases) {
    const shown = input.length > 40 ? `${input.slice(0, 20)}... (${input.length})` : JSON.stringify(input);
    t.equal(nodeIsIP(input), expected, `node:net: ${shown}`);
    t.equal(isIP(input), expected, `ip: ${shown}`);
  }
});

t.test('the same answers as node:net on random strings of address characters', async (t) => {
  // A fixed seed (xorshift): the same strings on every run.
  let seed = 0x2545f491;
  const next = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 0x100000000;
  };
  const alphabet = '0123456789abcdefABCDEF:.%g- ';
  let differ = 0;
  let addresses = 0;
  for (let i = 0; i < 20000; i++) {
    const length = Math.floor(next() * 24);
    let input = '';
    for (let j = 0; j < length; j++) input += alphabet[Math.floor(next() * alphabet.length)];
    if (isIP(input) !== nodeIsIP(input)) differ++;
    if (nodeIsIP(input) !== 0) addresses++;
  }
  // Strings made of address parts (segments good and bad, joined by : and .), which are addresses far more often.
  const parts = ['0', '1', '9', '10', '99', '255', '256', '01', 'ff', 'ffff', 'FFFF', '12345', 'g', '', '%eth0', '1.2.3.4'];
  for (let i = 0; i < 20000; i++) {
    const count = 1 + Math.floor(next() * 9);
    let input = parts[Math.floor(next() * parts.length)];
    for (let j = 1; j < count; j++) input += (next() < 0.5 ? ':' : '.') + parts[Math.floor(next() * parts.length)];
    if (isIP(input) !== nodeIsIP(input)) differ++;
    if (nodeIsIP(input) !== 0) addresses++;
  }
  t.equal(differ, 0, 'no string is answered differently');
  t.ok(addresses > 100, `many of them are addresses (${addresses})`);
});
