// tar-fs ships no types: the part of its pack API packLayer uses (fs: a file-system shim, pack: our tar-stream packer).
declare module 'tar-fs' {
  import type { Readable } from 'node:stream';
  interface PackOptions {
    entries?: string[];
    ignore?: (name: string) => boolean;
    map?: (header: { name: string }) => unknown;
    umask?: number;
    strict?: boolean;
    fs?: unknown;
    pack?: unknown;
  }
  const tar: { pack(dir: string, options?: PackOptions): Readable };
  export default tar;
}
