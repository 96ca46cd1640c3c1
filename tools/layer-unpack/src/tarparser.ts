/**
 * tar-stream's extractor, reading headers as Go's archive/tar does.
 *
 * tar-stream keeps the stream plumbing (buffering, one Readable per entry,
 * back-pressure); we replace, on each extractor we create, the three methods
 * that decide what an entry is (`_consumeHeader`, `_decodeLongHeader`,
 * `_write`), so that (see tarheader.ts for the field decoding):
 *  - header-only types (links, symlinks, devices, fifos, directories) have no
 *    data whatever their size field says (tar-stream skipped the size as
 *    data, hiding entries from every other reader, and never ended a
 *    directory's stream);
 *  - PAX and GNU long-name/link headers are capped at 1 MiB before a byte of
 *    them is buffered (ERR_LAYER_TOO_LARGE); a GNU long name wins over a PAX
 *    path, an empty one applies at once, and a global PAX header is
 *    validated and ignored (it applies to no entry in Go, nor in Docker);
 *  - a zero block followed by a zero block ends the archive: everything
 *    after it is dropped unparsed (the caller still hashes it); a zero block
 *    followed by anything else is an error;
 *  - names are byte strings (see tarheader.ts);
 *  - PAX numbers are parsed strictly; sparse files are refused by name.
 * The methods are tar-stream internals (lib/extract.js of 3.2.2): install()
 * checks they exist and fails loudly (not subtly) if an upgrade moved them.
 * That check cannot see a method whose meaning changed, so tar-stream is
 * pinned exactly (3.2.2, in the root package.json and layer-unpack's): an
 * upgrade is a deliberate step, re-reading extract.js against the methods
 * below and running tar-go.test.ts.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { Extract } from 'tar-stream';
import {
  MAX_SPECIAL_FILE_BYTES,
  TYPE,
  XATTR_PAX_PREFIX,
  decodeBlock,
  headerError,
  isHeaderOnly,
  isMetaHeader,
  isZeroBlock,
  paxSparseFormat,
  parsePax,
  parsePaxInt,
  parsePaxTime,
  showTypeflag,
  type PaxRecords,
  type RawHeader,
} from './tarheader.js';

export { XATTR_PAX_PREFIX };

export type EntryType = 'file' | 'link' | 'symlink' | 'character-device' | 'block-device' | 'directory' | 'fifo' | 'contiguous-file' | null;

/** One entry as the applier sees it: every extended header applied, names as byte strings. */
export interface TarEntryHeader {
  /** Byte string (latin1: one char per byte). */
  name: string;
  /** null for a typeflag we do not apply (see `typeflag`). */
  type: EntryType;
  typeflag: number;
  /** Data bytes that follow (0 for header-only types). */
  size: number;
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch, fractional, possibly negative. */
  mtime: number;
  atime: number;
  /** Byte string; '' when none. */
  linkname: string;
  /** SCHILY.xattr.* records: name → value, both byte strings. */
  xattrs?: Map<string, string>;
}

const TYPES: Record<number, EntryType> = {
  [TYPE.reg]: 'file',
  [TYPE.link]: 'link',
  [TYPE.symlink]: 'symlink',
  [TYPE.char]: 'character-device',
  [TYPE.block]: 'block-device',
  [TYPE.dir]: 'directory',
  [TYPE.fifo]: 'fifo',
  [TYPE.cont]: 'contiguous-file',
};

/** Our state, kept beside tar-stream's on the extractor. */
interface State {
  pax: PaxRecords | undefined;
  gnuName: string;
  gnuLink: string;
  /** The meta header whose data is being buffered. */
  meta: number;
  /** A zero block was read: the next block decides between the end and an error. */
  zero: boolean;
  eof: boolean;
}

/** The tar-stream internals we drive (extract.js of 3.2.2, pinned exactly: see the file comment). */
interface Internals {
  _locked: boolean;
  _offset: number;
  _header: unknown;
  _stream: unknown;
  _missing: number;
  _longHeader: boolean;
  _unlockBound: () => void;
  _buffer: { shifted: number; buffered: number; shift(n: number): Buffer; shiftFirst(n: number): Buffer | null };
  _continueWrite(err: Error | null): void;
  _createStream(): unknown;
  _update(): void;
  _write(data: Buffer, cb: (err?: Error | null) => void): void;
  emit(event: string, ...args: unknown[]): boolean;
}

const EMPTY_STRING_OK = new Set(['path', 'linkpath', 'uname', 'gname']);

/** Go's mergePAX (strict about numbers, see the README) plus GNU long names and the legacy trailing-slash directory. */
function finalHeader(raw: RawHeader, st: State): TarEntryHeader {
  const pax = st.pax;
  const h: TarEntryHeader = {
    name: raw.name,
    type: null,
    typeflag: raw.typeflag,
    size: raw.size,
    mode: raw.mode,
    uid: raw.uid,
    gid: raw.gid,
    mtime: raw.mtime,
    atime: raw.mtime,
    linkname: raw.linkname,
  };
  let atime: number | undefined;
  if (pax) {
    for (const [key, value] of pax) {
      if (value === '') {
        // Go keeps the USTAR value; an empty number is refused here as a malformed header.
        if (EMPTY_STRING_OK.has(key) || !['uid', 'gid', 'size', 'mtime', 'atime', 'ctime'].includes(key)) continue;
        throw headerError(`PAX ${key} is empty`);
      }
      switch (key) {
        case 'path':
          h.name = value;
          break;
        case 'linkpath':
          h.linkname = value;
          break;
        case 'uid':
          h.uid = parsePaxInt(key, value);
          break;
        case 'gid':
          h.gid = parsePaxInt(key, value);
          break;
        case 'size':
          h.size = parsePaxInt(key, value);
          break;
        case 'mtime':
          h.mtime = parsePaxTime(key, value);
          break;
        case 'atime':
          atime = parsePaxTime(key, value);
          break;
        case 'ctime':
          parsePaxTime(key, value);
          break;
        default:
          if (key.startsWith(XATTR_PAX_PREFIX)) (h.xattrs ??= new Map()).set(key.slice(XATTR_PAX_PREFIX.length), value);
      }
    }
  }
  h.atime = atime ?? h.mtime;
  if (st.gnuName !== '') h.name = st.gnuName;
  if (st.gnuLink !== '') h.linkname = st.gnuLink;
  let typeflag = raw.typeflag;
  if (typeflag === TYPE.regA) typeflag = h.name.endsWith('/') ? TYPE.dir : TYPE.reg;
  h.type = TYPES[typeflag] ?? null;
  if (h.size < 0) throw headerError(`${JSON.stringify(h.name)} has a negative size`);
  if (isHeaderOnly(typeflag)) h.size = 0;
  if (typeflag === TYPE.gnuSparse) {
    throw new ConveyorError(
      'ERR_LAYER_INVALID',
      `entry ${JSON.stringify(h.name)} is an old GNU sparse file (type ${showTypeflag(typeflag)}), which is not supported`,
      {
        hint: 're-create the layer without --sparse (GNU tar -S)',
      },
    );
  }
  if (pax) {
    const sparse = paxSparseFormat(pax);
    if (sparse !== undefined) {
      throw new ConveyorError(
        'ERR_LAYER_INVALID',
        `entry ${JSON.stringify(pax.get('GNU.sparse.name') || h.name)} is a GNU sparse file (PAX format ${sparse}), which is not supported`,
        {
          hint: 're-create the layer without --sparse (GNU tar -S)',
        },
      );
    }
  }
  st.pax = undefined;
  st.gnuName = '';
  st.gnuLink = '';
  return h;
}

function decodeMeta(st: State, buf: Buffer): void {
  switch (st.meta) {
    case TYPE.paxLocal:
      st.pax = parsePax(buf);
      return;
    case TYPE.paxGlobal:
      // Validated, then dropped with whatever was pending: Go returns it as an entry of its own.
      parsePax(buf);
      st.pax = undefined;
      st.gnuName = '';
      st.gnuLink = '';
      return;
    case TYPE.gnuLongName:
    case TYPE.gnuLongLink: {
      const nul = buf.indexOf(0);
      const value = buf.toString('latin1', 0, nul < 0 ? buf.length : nul);
      if (st.meta === TYPE.gnuLongName) st.gnuName = value;
      else st.gnuLink = value;
    }
  }
}

function install(extract: Extract): void {
  const x = extract as unknown as Internals;
  for (const method of ['_continueWrite', '_createStream', '_update', '_write'] as const) {
    if (typeof x[method] !== 'function') throw new ConveyorError('ERR_INTERNAL', `[internal error] tar-stream changed: ${method} is missing`);
  }
  if (!x._buffer || typeof x._buffer.shift !== 'function') throw new ConveyorError('ERR_INTERNAL', '[internal error] tar-stream changed: _buffer is missing');
  const st: State = { pax: undefined, gnuName: '', gnuLink: '', meta: 0, zero: false, eof: false };
  const write = x._write;

  const dropBuffered = () => {
    while (x._buffer.buffered > 0) x._buffer.shiftFirst(x._buffer.buffered);
  };

  x._write = function (data, cb) {
    if (st.eof) return cb(null); // after the end-of-archive marker: hashed by the caller, never parsed
    write.call(this, data, cb);
  };

  (x as unknown as { _decodeLongHeader(buf: Buffer): void })._decodeLongHeader = (buf) => decodeMeta(st, buf);

  (x as unknown as { _consumeHeader(): boolean })._consumeHeader = function consumeHeader(): boolean {
    if (x._locked) return false;
    x._offset = x._buffer.shifted;
    let header: TarEntryHeader;
    try {
      const block = x._buffer.shift(512);
      if (isZeroBlock(block)) {
        if (st.zero) {
          st.eof = true;
          dropBuffered();
          return true;
        }
        st.zero = true;
        return true;
      }
      if (st.zero) throw headerError('a zero block followed by a header (the end-of-archive marker is two zero blocks)');
      const raw = decodeBlock(block);
      if (isMetaHeader(raw.typeflag)) {
        if (raw.size > MAX_SPECIAL_FILE_BYTES) {
          throw new ConveyorError(
            'ERR_LAYER_TOO_LARGE',
            `an extended header (typeflag ${showTypeflag(raw.typeflag)}) of ${raw.size} bytes exceeds the limit of ${MAX_SPECIAL_FILE_BYTES} bytes`,
          );
        }
        st.meta = raw.typeflag;
        x._header = { size: raw.size };
        if (raw.size === 0) {
          decodeMeta(st, Buffer.alloc(0));
          return true;
        }
        x._longHeader = true;
        x._missing = raw.size;
        return true;
      }
      header = finalHeader(raw, st);
    } catch (err) {
      x._continueWrite(err as Error);
      return false;
    }
    x._header = header;
    x._locked = true;
    if (header.size === 0) {
      x.emit('entry', header, x._createStream(), x._unlockBound);
      return true;
    }
    x._stream = x._createStream();
    x._missing = header.size;
    x.emit('entry', header, x._stream, x._unlockBound);
    return true;
  };
}

export async function createExtract(): Promise<Extract> {
  const tar = await import('tar-stream');
  const extract = tar.extract();
  install(extract);
  return extract;
}
