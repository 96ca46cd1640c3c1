/**
 * Where a regular file's data goes: the writer threads (writer.ts). Small
 * files are queued whole, as one operation, once their last chunk arrived;
 * larger ones are opened at once and streamed in chunks. The sink never
 * throws: a failed write surfaces as the writer's failure (the applier's
 * failure handler, or its next drain()).
 */
import type { FileMetaOp, Writer } from './writer.js';

/** Files up to this size are sent to the writer thread whole; larger ones in chunks. */
const SMALL_FILE = 1024 * 1024;

/** Receives one regular file's data: write() each chunk in order, then end(). */
export interface FileSink {
  write(chunk: Uint8Array): void;
  end(): void;
}

/** A sink creating `abs` (a byte-string path) with `size` bytes and `meta`. */
export function fileSink(writer: Writer, abs: string, size: number, meta: FileMetaOp): FileSink {
  if (size <= SMALL_FILE) {
    const chunks: Uint8Array[] = [];
    let length = 0;
    return {
      write(chunk) {
        chunks.push(chunk);
        length += chunk.length;
      },
      end() {
        writer.file(abs, chunks, length, meta);
      },
    };
  }
  const id = writer.open(abs);
  return {
    write(chunk) {
      writer.write(id, chunk);
    },
    end() {
      writer.close(id, meta);
    },
  };
}
