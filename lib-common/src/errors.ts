/**
 * Errors with stable codes. Every failure a tool reports carries a code
 * (`ERR_<AREA>_<WHAT>`) that scripts can branch on, a one-line message, an
 * optional hint, and the exit code the tool should end with.
 */

/** Exit codes shared by every tool (ctr-spawn adds Docker's 125/126/127). */
export const EXIT = {
  OK: 0,
  FAILED: 1,
  USAGE: 2,
  SPAWN_FAILED: 125,
  NOT_EXECUTABLE: 126,
  NOT_FOUND: 127,
} as const;

/** Every stable error code and the exit code it maps to. Documented in docs/protocol.md. */
export const ERROR_CODES = {
  ERR_USAGE: EXIT.USAGE,
  ERR_INPUT_JSON: EXIT.USAGE,
  ERR_INPUT_RECORD: EXIT.USAGE,
  ERR_REF_INVALID: EXIT.USAGE,
  ERR_PLATFORM_INVALID: EXIT.USAGE,
  /** A Dockerfile img-build cannot parse or resolve: usage-like input, named by file and line. */
  ERR_DOCKERFILE_PARSE: EXIT.USAGE,
  /** img-build COPY/ADD (src/copy): a source that matches nothing or escapes its root; an unusable destination; an unknown --chown; an ADD URL that cannot be fetched. */
  ERR_BUILD_SOURCE: EXIT.FAILED,
  ERR_BUILD_DEST: EXIT.FAILED,
  ERR_BUILD_OWNER: EXIT.FAILED,
  ERR_BUILD_FETCH: EXIT.FAILED,
  /** img-build: a build step failed (a RUN exited non-zero, as `docker build` exits 1). */
  ERR_BUILD_STEP: EXIT.FAILED,
  /** img-build: cancelled by SIGINT/SIGTERM (exit 130/143 set where it is thrown); the step's container is removed. */
  ERR_BUILD_CANCELLED: EXIT.FAILED,
  ERR_REGISTRY_NOT_FOUND: EXIT.FAILED,
  ERR_REGISTRY_UNAUTHORIZED: EXIT.FAILED,
  ERR_REGISTRY_DENIED: EXIT.FAILED,
  ERR_REGISTRY_RATE_LIMITED: EXIT.FAILED,
  ERR_REGISTRY_UNAVAILABLE: EXIT.FAILED,
  ERR_REGISTRY_PROTOCOL: EXIT.FAILED,
  ERR_REGISTRY_TLS: EXIT.FAILED,
  ERR_MANIFEST_UNSUPPORTED: EXIT.FAILED,
  ERR_MANIFEST_INVALID: EXIT.FAILED,
  ERR_PLATFORM_NOT_FOUND: EXIT.FAILED,
  ERR_DIGEST_MISMATCH: EXIT.FAILED,
  ERR_SIZE_MISMATCH: EXIT.FAILED,
  ERR_AUTH_HELPER: EXIT.FAILED,
  ERR_STORE_CORRUPT: EXIT.FAILED,
  ERR_STORE_LOCKED: EXIT.FAILED,
  ERR_STORE_IO: EXIT.FAILED,
  ERR_STORE_UNSAFE: EXIT.FAILED,
  /** Rootless: the user namespace a tool must run in (lib-common/rootless/keeper) could not be made or joined. */
  ERR_USERNS_UNAVAILABLE: EXIT.FAILED,
  ERR_IMAGE_NOT_FOUND: EXIT.FAILED,
  ERR_LAYER_MALICIOUS: EXIT.FAILED,
  ERR_LAYER_INVALID: EXIT.FAILED,
  ERR_LAYER_TOO_LARGE: EXIT.FAILED,
  ERR_LAYER_COMPRESSION: EXIT.FAILED,
  ERR_MOUNT_FAILED: EXIT.FAILED,
  ERR_MOUNT_NOT_FOUND: EXIT.FAILED,
  ERR_RUNTIME_NOT_FOUND: EXIT.SPAWN_FAILED,
  ERR_SPAWN_FAILED: EXIT.SPAWN_FAILED,
  ERR_SPAWN_NOT_EXECUTABLE: EXIT.NOT_EXECUTABLE,
  ERR_SPAWN_COMMAND_NOT_FOUND: EXIT.NOT_FOUND,
  ERR_USER_NOT_FOUND: EXIT.SPAWN_FAILED,
  ERR_CGROUP: EXIT.SPAWN_FAILED,
  ERR_SPAWN_UNSAFE_WORKDIR: EXIT.SPAWN_FAILED,
  ERR_PORT_UNAVAILABLE: EXIT.SPAWN_FAILED,
  ERR_NETWORK_FAILED: EXIT.SPAWN_FAILED,
  ERR_CONTAINER_NOT_FOUND: EXIT.FAILED,
  ERR_CONTAINER_AMBIGUOUS: EXIT.FAILED,
  ERR_CONTAINER_NAME_IN_USE: EXIT.FAILED,
  ERR_CONTAINER_RUNNING: EXIT.FAILED,
  ERR_CONTAINER_NOT_RUNNING: EXIT.FAILED,
  ERR_IMAGE_IN_USE: EXIT.FAILED,
  ERR_VOLUME_NOT_FOUND: EXIT.FAILED,
  ERR_VOLUME_IN_USE: EXIT.FAILED,
  ERR_INTERNAL: EXIT.FAILED,
  /** Never printed: a tool whose input held nothing but an upstream `error` record ends with that record's exit code (lib-common/pipeline). */
  ERR_UPSTREAM_FAILED: EXIT.FAILED,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ConveyorErrorOptions {
  /** What the user can do about it; printed in parentheses after the message. */
  hint?: string;
  /** Overrides the exit code the code maps to. */
  exitCode?: number;
  cause?: unknown;
  /** Extra machine-readable fields for `--log-format=json` (line number, digest, url...). */
  details?: Record<string, unknown>;
}

export class ConveyorError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;
  readonly exitCode: number;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: ConveyorErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ConveyorError';
    this.code = code;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? ERROR_CODES[code];
    this.details = options.details;
  }
}

export function isConveyorError(error: unknown): error is ConveyorError {
  return error instanceof ConveyorError;
}

/** Wraps anything thrown into a ConveyorError, keeping Node's errno text as the cause. */
export function toConveyorError(error: unknown, fallback: ErrorCode = 'ERR_INTERNAL'): ConveyorError {
  if (error instanceof ConveyorError) return error;
  const err = error as NodeJS.ErrnoException;
  const message = err && typeof err.message === 'string' ? err.message : String(error);
  if (err && typeof err.code === 'string' && err.syscall) {
    return new ConveyorError(fallback === 'ERR_INTERNAL' ? 'ERR_STORE_IO' : fallback, message, { cause: error });
  }
  return new ConveyorError(fallback, message, { cause: error });
}
