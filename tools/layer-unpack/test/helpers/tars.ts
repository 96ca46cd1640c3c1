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
