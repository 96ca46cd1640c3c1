/**
 * Tar header blocks and PAX records, decoded the way Go's archive/tar reads
 * them (what Docker, containerd and image scanners use): wherever two readers
 * see different files in the same bytes, a scanner approves one image and
 * the runtime runs another, so we follow Go field by field instead of
 * tar-stream's more liberal decoder.
 *
 * Strings are "byte strings": latin1-decoded, one char per byte, so names
 * that are not UTF-8 keep their exact bytes (Buffer.from(s, 'latin1') gives
 * them back). Every refusal is a ConveyorError: ERR_LAYER_INVALID where Go
 * says ErrHeader, ERR_LAYER_TOO_LARGE for an extended header over Go's cap.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';

/** Go's maxSpecialFileSize: the largest PAX or GNU long-name/link header accepted. */
export const MAX_SPECIAL_FILE_BYTES = 1024 * 1024;

export const XATTR_PAX_PREFIX = 'SCHILY.xattr.';

/** Typeflags (bytes) Go treats specially. */
export const TYPE = {
  regA: 0x00,
  reg: 0x30,
  link: 0x31,
  symlink: 0x32,
  char: 0x33,
  block: 0x34,
  dir: 0x35,
  fifo: 0x36,
  cont: 0x37,
  paxLocal: 0x78, // 'x'
  paxGlobal: 0x67, // 'g'
  gnuLongName: 0x4c, // 'L'
  gnuLongLink: 0x4b, // 'K'
  gnuSparse: 0x53, // 'S'
} as const;

/** Go's isHeaderOnlyType: these never have a data section, whatever their size field says. */
export function isHeaderOnly(typeflag: number): boolean {
  return (
    typeflag === TYPE.link || typeflag === TYPE.symlink || typeflag === TYPE.char || typeflag === TYPE.block || typeflag === TYPE.dir || typeflag === TYPE.fifo
  );
}

export function isMetaHeader(typeflag: number): boolean {
  return typeflag === TYPE.paxLocal || typeflag === TYPE.paxGlobal || typeflag === TYPE.gnuLongName || typeflag === TYPE.gnuLongLink;
}

/** A typeflag for messages: `'S' (0x53)`. */
export function showTypeflag(typeflag: number): string {
  const hex = `0x${typeflag.toString(16).padStart(2, '0')}`;
  return typeflag >= 0x20 && typeflag < 0x7f ? `'${String.fromCharCode(typeflag)}' (${hex})` : hex;
}

export function headerError(message: string): ConveyorError {
  return new ConveyorError('ERR_LAYER_INVALID', `invalid tar header: ${message}`);
}

/** One 512-byte header block, decoded (before PAX and GNU long names are applied). */
export interface RawHeader {
  name: string;
  linkname: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch; may be negative. */
  mtime: number;
  typeflag: number;
}

const ZERO_BLOCK = Buffer.alloc(512);

export function isZeroBlock(block: Buffer): boolean {
  return block.equals(ZERO_BLOCK);
}

/** Go's parseString: bytes up to the first NUL. */
function parseString(b: Buffer, start: number, length: number): string {
  let end = start;
  const limit = start + length;
  while (end < limit && b[end] !== 0) end++;
  return b.toString('latin1', start, end);
}

/** Go's parseNumeric: base-256 (two's complement, high bit set) or octal, trimmed of spaces and NULs. */
function parseNumeric(b: Buffer, start: number, length: number, field: string): number {
  const f = b.subarray(start, start + length);
  if (f.length > 0 && (f[0] & 0x80) !== 0) {
    const negative = (f[0] & 0x40) !== 0;
    let x = 0n;
    for (let i = 0; i < f.length; i++) {
      let c = negative ? f[i] ^ 0xff : f[i];
      if (i === 0) c &= 0x7f;
      if (x >> 56n > 0n) throw headerError(`${field} overflows`);
      x = (x << 8n) | BigInt(c);
    }
    if (x >> 63n > 0n) throw headerError(`${field} overflows`);
    return safe(negative ? -x - 1n : x, field);
  }
  let lo = 0;
  let hi = f.length;
  while (lo < hi && (f[lo] === 0x20 || f[lo] === 0)) lo++;
  while (hi > lo && (f[hi - 1] === 0x20 || f[hi - 1] === 0)) hi--;
  if (lo === hi) return 0;
  const text = parseString(f, lo, hi - lo);
  if (!/^[0-7]+$/.test(text)) throw headerError(`${field} is not an octal number: ${JSON.stringify(text)}`);
  return safe(BigInt(`0o${text}`), field);
}

/** Beyond 2^53 a JS number is not the value Go reads: refuse rather than round. */
function safe(n: bigint, field: string): number {
  if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)) throw headerError(`${field} is out of range`);
  return Number(n);
}

/** Go's block.computeChecksum: the unsigned and the signed sum, the checksum field read as spaces. */
function checksums(b: Buffer): [number, number] {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : b[i];
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return [unsigned, signed];
}

type Format = 'v7' | 'ustar' | 'star' | 'gnu';

/** Go's getFormat: checksum first, then the magic decides where the name prefix lives. */
function formatOf(b: Buffer): Format {
  const sum = parseNumeric(b, 148, 8, 'checksum');
  const [unsigned, signed] = checksums(b);
  if (sum !== unsigned && sum !== signed) throw headerError('checksum mismatch (a corrupt archive, or one that needs decompressing)');
  const magic = b.toString('latin1', 257, 263);
  if (magic === 'ustar\0') return b.toString('latin1', 508, 512) === 'tar\0' ? 'star' : 'ustar';
  if (magic === 'ustar ' && b.toString('latin1', 263, 265) === ' \0') return 'gnu';
  return 'v7';
}

/** Decodes a non-zero header block (the caller handles zero blocks: the end-of-archive marker). */
export function decodeBlock(b: Buffer): RawHeader {
  const format = formatOf(b);
  const typeflag = b[156];
  let name = parseString(b, 0, 100);
  const header: RawHeader = {
    name,
    linkname: parseString(b, 157, 100),
    mode: parseNumeric(b, 100, 8, 'mode'),
    uid: parseNumeric(b, 108, 8, 'uid'),
    gid: parseNumeric(b, 116, 8, 'gid'),
    size: parseNumeric(b, 124, 12, 'size'),
    mtime: parseNumeric(b, 136, 12, 'mtime'),
    typeflag,
  };
  if (format !== 'v7' && (typeflag === TYPE.char || typeflag === TYPE.block)) {
    // Go validates the device numbers (and reports a malformed one) even though we skip devices.
    parseNumeric(b, 329, 8, 'devmajor');
    parseNumeric(b, 337, 8, 'devminor');
  }
  // USTAR's prefix is 155 bytes; star's is 131 (its atime and ctime follow); GNU has none.
  const prefix = format === 'ustar' ? parseString(b, 345, 155) : format === 'star' ? parseString(b, 345, 131) : '';
  if (prefix !== '') name = `${prefix}/${name}`;
  header.name = name;
  if (header.size < 0) throw headerError(`negative size ${header.size}`);
  return header;
}

/** Go's strconv.ParseInt(v, 10, 64), limited to what a JS number holds exactly. */
export function parsePaxInt(key: string, value: string): number {
  if (!/^[+-]?[0-9]+$/.test(value)) throw headerError(`PAX ${key}=${JSON.stringify(value.slice(0, 40))} is not an integer`);
  return safe(BigInt(value), `PAX ${key}`);
}

/** Go's parsePAXTime: `[-]seconds[.fraction]`, the fraction truncated to nanoseconds. */
export function parsePaxTime(key: string, value: string): number {
  const dot = value.indexOf('.');
  const secs = parsePaxInt(key, dot < 0 ? value : value.slice(0, dot));
  const frac = dot < 0 ? '' : value.slice(dot + 1);
  if (!/^[0-9]*$/.test(frac)) throw headerError(`PAX ${key}=${JSON.stringify(value.slice(0, 40))} is not a time`);
  if (frac === '') return secs;
  const nanos = Number(frac.slice(0, 9).padEnd(9, '0')) / 1e9;
  return value.startsWith('-') ? secs - nanos : secs + nanos;
}

export type PaxRecords = Map<string, string>;

/**
 * Go's parsePAX: `"%d %s=%s\n"` records, strictly (no NUL padding, no empty
 * or NUL-bearing key, no NUL in path values), later records replacing
 * earlier ones. GNU sparse 0.0's repeated offset/numbytes records are folded
 * into GNU.sparse.map as Go does. Keys and values are byte strings.
 */
export function parsePax(buf: Buffer): PaxRecords {
  const records: PaxRecords = new Map();
  const sparseMap: string[] = [];
  let offset = 0;
  while (offset < buf.length) {
    const space = buf.indexOf(0x20, offset);
    if (space < 0) throw headerError('PAX record without a length');
    const lengthText = buf.toString('latin1', offset, space);
    if (!/^[+-]?[0-9]+$/.test(lengthText)) throw headerError('PAX record length is not a number');
    const length = Number(lengthText);
    if (length < 5 || length > buf.length - offset || space + 1 >= offset + length) throw headerError('PAX record length out of range');
    const end = offset + length;
    if (buf[end - 1] !== 0x0a) throw headerError('PAX record does not end in a newline');
    const record = buf.toString('latin1', space + 1, end - 1);
    const eq = record.indexOf('=');
    if (eq < 0) throw headerError('PAX record without "="');
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    if (key === '') throw headerError('PAX record with an empty key');
    const stringKey = key === 'path' || key === 'linkpath' || key === 'uname' || key === 'gname';
    if (stringKey ? value.includes('\0') : key.includes('\0')) {
      throw headerError(`PAX record ${JSON.stringify(key.slice(0, 60))} contains a NUL byte`);
    }
    if (key === 'GNU.sparse.offset' || key === 'GNU.sparse.numbytes') {
      const expected = sparseMap.length % 2 === 0 ? 'GNU.sparse.offset' : 'GNU.sparse.numbytes';
      if (key !== expected || value.includes(',')) throw headerError('malformed GNU sparse 0.0 records');
      sparseMap.push(value);
    } else {
      records.set(key, value);
    }
    offset = end;
  }
  if (sparseMap.length > 0) records.set('GNU.sparse.map', sparseMap.join(','));
  return records;
}

/** The GNU sparse format a PAX header declares (Go's readGNUSparsePAXHeaders), or undefined for a plain file. */
export function paxSparseFormat(pax: PaxRecords): string | undefined {
  const major = pax.get('GNU.sparse.major') ?? '';
  const minor = pax.get('GNU.sparse.minor') ?? '';
  if (major === '0' && (minor === '0' || minor === '1')) return `0.${minor}`;
  if (major === '1' && minor === '0') return '1.0';
  if (major !== '' || minor !== '') return undefined; // an unknown version: Go reads a plain file
  if ((pax.get('GNU.sparse.map') ?? '') !== '') return '0.0 or 0.1'; // neither declares its version
  return undefined;
}
