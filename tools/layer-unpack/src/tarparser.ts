/**
 * tar-stream's extractor, hardened for hostile input.
 *
 * tar-stream decodes every PAX value as UTF-8, which mangles binary xattr
 * values (security.capability) and has no cap on the number of records. We
 * install our own PAX decoder on tar-stream's header module (the same module
 * object its extractor calls, reached by file path because the package's
 * `exports` does not list it): xattr values keep their exact bytes (as a
 * latin1 string, one char per byte), records are length-checked, and a PAX
 * header with more than MAX_PAX_RECORDS records fails the archive.
 * tar-stream itself caps a PAX/GNU long-name header at 4 MiB.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Extract } from 'tar-stream';

export const MAX_PAX_RECORDS = 10_000;
export const XATTR_PAX_PREFIX = 'SCHILY.xattr.';

let installed = false;

function decodePax(buf: Buffer): Record<string, string> {
  const result: Record<string, string> = {};
  let records = 0;
  let offset = 0;
  while (offset < buf.length) {
    let space = offset;
    while (space < buf.length && buf[space] !== 0x20) space++;
    const lengthText = buf.toString('latin1', offset, space);
    if (lengthText === '' && buf.subarray(offset).every((b) => b === 0)) break; // NUL padding
    if (!/^[0-9]{1,8}$/.test(lengthText)) throw new Error('invalid PAX record length');
    const length = Number(lengthText);
    if (length <= space - offset + 1 || offset + length > buf.length || buf[offset + length - 1] !== 0x0a) {
      throw new Error('invalid PAX record');
    }
    if (++records > MAX_PAX_RECORDS) throw new Error(`PAX header has more than ${MAX_PAX_RECORDS} records`);
    const record = buf.subarray(space + 1, offset + length - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw new Error('invalid PAX record: no key');
    const key = record.toString('utf8', 0, eq);
    // xattr values are bytes; everything else is UTF-8 text (paths, numbers).
    result[key] = record.toString(key.startsWith(XATTR_PAX_PREFIX) ? 'latin1' : 'utf8', eq + 1);
    offset += length;
  }
  return result;
}

function install(): void {
  if (installed) return;
  const require = createRequire(import.meta.url);
  const headers = require(join(dirname(require.resolve('tar-stream')), 'headers.js')) as { decodePax: typeof decodePax };
  headers.decodePax = decodePax;
  installed = true;
}

export async function createExtract(): Promise<Extract> {
  install();
  const tar = await import('tar-stream');
  return tar.extract();
}
