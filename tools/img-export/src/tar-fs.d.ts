// tar-fs ships no types: the part of its API img-export uses.
declare module 'tar-fs' {
  import type { Readable } from 'node:stream';
  interface PackOptions {
    entries?: string[];
    ignore?: (name: string) => boolean;
    map?: <T extends { name: string }>(header: T) => T;
    dereference?: boolean;
    umask?: number;
    strict?: boolean;
    sort?: boolean;
  }
  const tar: { pack(dir: string, options?: PackOptions): Readable };
  export default tar;
}
