/** Builds test layers: tar-stream's pack for ordinary entries, raw headers for GNU long names. */
import { gzipSync } from 'node:zlib';
import { pack, type Header } from 'tar-stream';

export interface TarEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  content?: string | Buffer;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  pax?: Record<string, string>;
  devmajor?: number;
  devminor?: number;
}

export async function makeTar(entries: TarEntry[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<void>((resolve, reject) => {
    p.on('end', () => resolve());
    p.on('error', reject);
  });
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: new Date(1700000000000),
      ...(e.linkname !== undefined ? { linkname: e.linkname } : {}),
      ...(e.pax ? { pax: e.pax } : {}),
      ...(e.devmajor !== undefined ? { devmajor: e.devmajor, devminor: e.devminor ?? 0 } : {}),
    } as unknown as Header;
    await new Promise<void>((resolve, reject) => {
      if (type === 'file') p.entry(header, e.content ?? '', (err) => (err ? reject(err) : resolve()));
      else p.entry(header, (err) => (err ? reject(err) : resolve())).end();
    });
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

/** One raw GNU-format header block. */
export function rawHeader(name: string, typeflag: string, size: number, linkname = ''): Buffer {
  const b = Buffer.alloc(512);
  b.write(name.slice(0, 100), 0, 'utf8');
  b.write(octal(0o644, 8), 100);
  b.write(octal(0, 8), 108);
  b.write(octal(0, 8), 116);
  b.write(octal(size, 12), 124);
  b.write(octal(1700000000, 12), 136);
  b.write('        ', 148);
  b.write(typeflag, 156);
  b.write(linkname.slice(0, 100), 157);
  b.write('ustar  \0', 257, 'latin1');
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return b;
}

function padded(data: Buffer): Buffer {
  return Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

/** A file entry whose name comes from a GNU long-name ('L') header. */
export function gnuLongNameTar(longName: string, content: string): Buffer {
  const nameData = Buffer.from(`${longName}\0`);
  const data = Buffer.from(content);
  return Buffer.concat([
    rawHeader('././@LongLink', 'L', nameData.length),
    padded(nameData),
    rawHeader('placeholder', '0', data.length),
    padded(data),
    Buffer.alloc(1024),
  ]);
}

export const gzip = (b: Buffer): Buffer => gzipSync(b);

/** Fields of a hand-made header block; strings are byte strings (latin1) unless a Buffer is given. */
export interface RawBlock {
  name: string | Buffer;
  /** One character ('0', '5', 'x', ...) or a byte value. */
  type?: string | number;
  size?: number;
  linkname?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds; a negative value is written in base-256 (as GNU tar does). */
  mtime?: number;
  /** 'ustar' (default: POSIX magic), 'gnu' or 'v7' (no magic). */
  format?: 'ustar' | 'gnu' | 'v7';
  prefix?: string;
}

const asBytes = (s: string | Buffer): Buffer => (Buffer.isBuffer(s) ? s : Buffer.from(s, 'latin1'));

/** One header block, checksummed, from raw fields (no validation: it builds hostile headers too). */
export function block(f: RawBlock): Buffer {
  const b = Buffer.alloc(512);
  asBytes(f.name).copy(b, 0, 0, 100);
  b.write(octal(f.mode ?? 0o644, 8), 100, 'latin1');
  b.write(octal(f.uid ?? 0, 8), 108, 'latin1');
  b.write(octal(f.gid ?? 0, 8), 116, 'latin1');
  b.write(octal(f.size ?? 0, 12), 124, 'latin1');
  const mtime = f.mtime ?? 1700000000;
  if (mtime < 0) {
    // base-256, two's complement, 12 bytes, first bit set
    let x = BigInt.asUintN(88, BigInt(mtime));
    for (let i = 147; i > 136; i--) {
      b[i] = Number(x & 0xffn);
      x >>= 8n;
    }
    b[136] = 0xff;
  } else b.write(octal(mtime, 12), 136, 'latin1');
  const type = f.type ?? '0';
  b[156] = typeof type === 'number' ? type : type.charCodeAt(0);
  if (f.linkname !== undefined) asBytes(f.linkname).copy(b, 157, 0, 100);
  const format = f.format ?? 'ustar';
  if (format === 'ustar') b.write('ustar\x0000', 257, 'latin1');
  if (format === 'gnu') b.write('ustar  \0', 257, 'latin1');
  if (f.prefix) b.write(f.prefix, 345, 'latin1');
  b.write('        ', 148, 'latin1');
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return b;
}

/** Data padded to whole blocks. */
export function data(d: string | Buffer): Buffer {
  return padded(asBytes(d));
}

/** PAX records (`"%d key=value\n"`), keys and values as byte strings or Buffers. */
export function paxData(records: [string, string | Buffer][]): Buffer {
  const out: Buffer[] = [];
  for (const [key, value] of records) {
    const body = Buffer.concat([Buffer.from(` ${key}=`, 'latin1'), asBytes(value), Buffer.from('\n')]);
    let length = body.length + 1;
    while (String(length).length + body.length !== length) length = String(length).length + body.length;
    out.push(Buffer.concat([Buffer.from(String(length)), body]));
  }
  return Buffer.concat(out);
}

/** A PAX extended header ('x', or 'g' for global) with its data, for the entry that follows. */
export function pax(records: [string, string | Buffer][], type: 'x' | 'g' = 'x'): Buffer {
  const d = paxData(records);
  return Buffer.concat([block({ name: 'PaxHeaders/x', type, size: d.length }), data(d)]);
}

/** A regular file entry: header plus padded data. */
export function fileEntry(name: string | Buffer, content: string | Buffer = '', extra: Partial<RawBlock> = {}): Buffer {
  const d = asBytes(content);
  return Buffer.concat([block({ name, size: d.length, ...extra }), data(d)]);
}

/** The end-of-archive marker: two zero blocks. */
export const END = Buffer.alloc(1024);
