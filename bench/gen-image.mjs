#!/usr/bin/env node
// Writes an OCI image layout for the scale benchmarks, cheaply and deterministically:
//   node bench/gen-image.mjs DIR TAG LAYERS BYTES_PER_LAYER [gzip|tar] [FILES_PER_LAYER]
// Each layer is a tar holding one file /layer-N of BYTES_PER_LAYER bytes (a repeated 1 MiB block
// that differs per layer), gzip level 1 or uncompressed (`tar`: the 1 GB layer, where gzip would cost
// more than the fetch it feeds). Layers stream to disk: memory stays flat at any size.
// FILES_PER_LAYER > 1: the layer's bytes are split into that many files instead, 100 to a directory
// (/d-N-K/f-I: what a node_modules or a Python tree makes a layer unpacker hold per entry).
// Exits 2 on bad arguments; any write error ends it with the error (the layout is then incomplete).
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { createGzip } from 'node:zlib';

const [dir, tag, layersText, bytesText, compression = 'gzip', filesText = '1'] = process.argv.slice(2);
const layers = Number(layersText);
const bytes = Number(bytesText);
const files = Number(filesText);
const badCount = (n, min) => !Number.isInteger(n) || n < min;
if (!dir || !tag || badCount(layers, 1) || badCount(bytes, 0) || badCount(files, 1) || files > bytes + 1 || !['gzip', 'tar'].includes(compression)) {
  process.stderr.write('usage: gen-image.mjs DIR TAG LAYERS BYTES_PER_LAYER [gzip|tar] [FILES_PER_LAYER]\n');
  process.exit(2);
}
const blobs = join(dir, 'blobs', 'sha256');
mkdirSync(blobs, { recursive: true });

const octal = (n, width) => n.toString(8).padStart(width - 1, '0') + '\0';
function header(name, size, type = '0') {
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

function writeBlob(data) {
  const digest = createHash('sha256').update(data).digest('hex');
  writeFileSync(join(blobs, digest), data);
  return { digest: `sha256:${digest}`, size: data.length };
}

async function writeLayer(index) {
  const tmp = join(dir, `layer-${index}.tmp`);
  const file = createWriteStream(tmp);
  const blobHash = createHash('sha256');
  const diffHash = createHash('sha256');
  let size = 0;
  const sink = compression === 'gzip' ? createGzip({ level: 1 }) : null;
  const target = sink ?? file;
  if (sink) sink.pipe(file);
  file.on('error', (e) => {
    throw e;
  });
  // Count and hash what reaches the file (the blob) by tapping the stream written to it.
  const tapped = sink ?? null;
  if (tapped) {
    tapped.on('data', (c) => {
      blobHash.update(c);
      size += c.length;
    });
  }
  const put = async (chunk) => {
    diffHash.update(chunk);
    if (!tapped) {
      blobHash.update(chunk);
      size += chunk.length;
    }
    if (!target.write(chunk)) await once(target, 'drain');
  };
  const block = randomBytes(1 << 20);
  const padding = (n) => Buffer.alloc((512 - (n % 512)) % 512);
  if (files > 1) {
    const each = Math.floor(bytes / files);
    // A directory's entries in one write (40,000 small writes cost seconds of system time); each file's
    // bytes from another place in the block, so gzip finds no repeat within its window.
    for (let first = 0; first < files; first += 100) {
      const dirName = `d-${index}-${first / 100}`;
      const parts = [header(`${dirName}/`, 0, '5')];
      for (let f = first; f < Math.min(first + 100, files); f++) {
        const at = (f * 9973) % (block.length - each + 1);
        parts.push(header(`${dirName}/f-${f}`, each), block.subarray(at, at + each), padding(each));
      }
      await put(Buffer.concat(parts));
    }
    await put(Buffer.alloc(1024));
  } else {
    await put(header(`layer-${index}`, bytes));
    for (let left = bytes; left > 0; ) {
      block.writeUInt32LE(left, 0);
      const n = Math.min(left, block.length);
      await put(n === block.length ? Buffer.from(block) : block.subarray(0, n));
      left -= n;
    }
    await put(Buffer.concat([padding(bytes), Buffer.alloc(1024)]));
  }
  target.end();
  await once(file, 'close');
  const digest = blobHash.digest('hex');
  renameSync(tmp, join(blobs, digest));
  const mediaType = compression === 'gzip' ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar';
  return { layer: { mediaType, digest: `sha256:${digest}`, size }, diffId: `sha256:${diffHash.digest('hex')}` };
}

const written = [];
for (let i = 0; i < layers; i++) written.push(await writeLayer(i));
const config = writeBlob(
  Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/true'] },
      rootfs: { type: 'layers', diff_ids: written.map((w) => w.diffId) },
    }),
  ),
);
const manifest = writeBlob(
  Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: written.map((w) => w.layer),
    }),
  ),
);
writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
writeFileSync(
  join(dir, 'index.json'),
  JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }),
);
