#!/usr/bin/env node
// Writes a plain tar layer to stdout that stresses the applier's bookkeeping:
//   node bench/gen-layer.mjs dir-to-file N   N empty directories, then each replaced by a file
//   node bench/gen-layer.mjs opaque N        N directories (each with a file), then an opaque marker in each
// Headers are written by hand (ustar, no PAX): the generator must cost little next to the unpack.
import { writeSync } from 'node:fs';

const [kind, countText] = process.argv.slice(2);
const count = Number(countText);
if (!['dir-to-file', 'opaque'].includes(kind) || !Number.isInteger(count) || count < 1) {
  process.stderr.write('usage: gen-layer.mjs dir-to-file|opaque N\n');
  process.exit(2);
}

const octal = (n, width) => n.toString(8).padStart(width - 1, '0') + '\0';
function header(name, type, size) {
  const b = Buffer.alloc(512);
  b.write(name, 0, 'latin1');
  b.write(octal(type === '5' ? 0o755 : 0o644, 8), 100, 'latin1');
  b.write(octal(0, 8), 108, 'latin1');
  b.write(octal(0, 8), 116, 'latin1');
  b.write(octal(size, 12), 124, 'latin1');
  b.write(octal(1700000000, 12), 136, 'latin1');
  b.write('        ', 148, 'latin1');
  b.write(type, 156, 'latin1');
  b.write('ustar\x0000', 257, 'latin1');
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(octal(sum, 7) + ' ', 148, 'latin1');
  return b;
}
const content = Buffer.alloc(512);
content.write('x');
const file = (name) => [header(name, '0', 1), content];

let out = [];
let outBytes = 0;
const emit = (...blocks) => {
  for (const b of blocks) {
    out.push(b);
    outBytes += b.length;
  }
  if (outBytes >= 1 << 20) flush();
};
function flush() {
  const buf = Buffer.concat(out);
  for (let off = 0; off < buf.length; ) off += writeSync(1, buf, off);
  out = [];
  outBytes = 0;
}

const name = (i) => `d${i.toString(36)}`;
// Directories to be replaced stay empty (removing them costs one rmdir): the bookkeeping is what is measured.
for (let i = 0; i < count; i++) emit(header(`${name(i)}/`, '5', 0), ...(kind === 'opaque' ? file(`${name(i)}/f`) : []));
for (let i = 0; i < count; i++) {
  if (kind === 'dir-to-file') emit(...file(name(i)));
  else emit(header(`${name(i)}/.wh..wh..opq`, '0', 0));
}
emit(Buffer.alloc(1024));
flush();
