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

/**
 * The brand every ConveyorError carries, by a registry symbol: the same in every copy of this
 * module. A tool can load lib-common twice (a stale bundle's fall-back to dist/cli.js reaches it
 * through node_modules/@conveyor/lib-common and through its real path), and an error made by one
 * copy must still be recognised by the other, or a store's ERR_STORE_CORRUPT turns into ERR_INTERNAL.
 */
const BRAND = Symbol.for('conveyor.ConveyorError');

export class ConveyorError extends Error {
  /**
   * `x instanceof ConveyorError` is true for a ConveyorError of any copy of this module (the brand),
   * so every place that recognises errors so need not know of copies. A subclass keeps the ordinary
   * test (its prototype chain).
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the class instanceof asks about, a subclass's own
    if (this !== ConveyorError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return isConveyorError(value);
  }

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

// On the prototype, not enumerable: not among an error's own fields (JSON, logs, tap's comparisons).
Object.defineProperty(ConveyorError.prototype, BRAND, { value: true });

/** Whether `error` is a ConveyorError made by any copy of this module (its brand, not its class's identity). */
export function isConveyorError(error: unknown): error is ConveyorError {
  return typeof error === 'object' && error !== null && (error as { [BRAND]?: unknown })[BRAND] === true;
}

/**
 * The errnos of a store that cannot take a write: what each means in words and
 * what to do. The tools' own messages say which file; these say why.
 */
const STORAGE_ERRNOS: Record<string, { says: string; hint: string }> = {
  ENOSPC: {
    says: 'no space left on device',
    hint: 'free space on that file system (img-prune removes unused images and layers), or use another store with --root',
  },
  EDQUOT: { says: 'disk quota exceeded', hint: 'free space within your quota (img-prune), or use another store with --root' },
  EROFS: {
    says: 'read-only file system',
    hint: 'the store is on a read-only mount: remount it read-write or use another store with --root; img-ls and img-inspect still read it',
  },
  EIO: { says: 'input/output error', hint: 'the disk or its file system failed: see the kernel log (dmesg), then check the store with img-fsck' },
};

/** True for the errnos of a full, read-only or failing file system (ENOSPC, EDQUOT, EROFS, EIO). */
export function isStorageErrno(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && code in STORAGE_ERRNOS;
}

/** How a failed syscall reads in a message (`cannot create /s/leases`); others by their name. */
const SYSCALL_VERBS: Record<string, string> = {
  open: 'cannot open',
  write: 'cannot write',
  writev: 'cannot write',
  fsync: 'cannot sync',
  fdatasync: 'cannot sync',
  mkdir: 'cannot create',
  symlink: 'cannot create',
  link: 'cannot link',
  rename: 'cannot rename',
  copyfile: 'cannot copy',
  unlink: 'cannot remove',
  rmdir: 'cannot remove',
};

export interface StoreIoContext {
  /** The file the failed operation was about; default the errno's own path (a write(2) error has none). */
  path?: string;
  /** What was being done, e.g. `cannot write`; default the syscall. */
  doing?: string;
  /** The store root: named in the message when `path` is in it. */
  store?: string;
}

/**
 * ERR_STORE_IO for a failed file operation, naming the path and, for a full,
 * read-only or failing file system, what happened in words with its errno:
 * `cannot write /store/index.json: no space left on device (ENOSPC)`. A
 * ConveyorError passes through unchanged. `details` carries `path` and `errno`.
 */
export function storeIoError(error: unknown, context: StoreIoContext = {}): ConveyorError {
  if (error instanceof ConveyorError) return error;
  const err = (error ?? {}) as NodeJS.ErrnoException & { dest?: string };
  const path = context.path ?? err.path;
  const known = typeof err.code === 'string' ? STORAGE_ERRNOS[err.code] : undefined;
  const doing = context.doing ?? (err.syscall ? (SYSCALL_VERBS[err.syscall] ?? err.syscall) : 'cannot write');
  const where = (path === undefined ? doing : `${doing} ${path}`) + (context.path === undefined && err.dest ? ` to ${err.dest}` : '');
  const why = known ? `${known.says} (${err.code})` : typeof err.message === 'string' ? err.message : String(error);
  const inStore = context.store !== undefined && path !== undefined && (path === context.store || path.startsWith(`${context.store}/`));
  const prefix = inStore ? `store ${context.store}: ` : '';
  return new ConveyorError('ERR_STORE_IO', `${prefix}${where}: ${why}`, {
    cause: error,
    hint: known?.hint,
    details: { ...(path === undefined ? {} : { path }), ...(typeof err.code === 'string' ? { errno: err.code } : {}) },
  });
}

/** An ERR_STORE_IO about a path in `store`, its message prefixed with `store <root>: ` (once). */
export function namingStore(error: ConveyorError, store: string | undefined): ConveyorError {
  const path = error.details?.path;
  if (error.code !== 'ERR_STORE_IO' || store === undefined || typeof path !== 'string' || error.message.startsWith('store ')) return error;
  if (path !== store && !path.startsWith(`${store}/`)) return error;
  return new ConveyorError(error.code, `store ${store}: ${error.message}`, {
    hint: error.hint,
    details: error.details,
    exitCode: error.exitCode,
    cause: error.cause,
  });
}

/** Wraps anything thrown into a ConveyorError, keeping Node's errno text as the cause. */
export function toConveyorError(error: unknown, fallback: ErrorCode = 'ERR_INTERNAL', context: { store?: string } = {}): ConveyorError {
  if (error instanceof ConveyorError) return namingStore(error, context.store);
  const err = error as NodeJS.ErrnoException;
  const message = err && typeof err.message === 'string' ? err.message : String(error);
  // A full, read-only or failing disk says so in words, with the path (and the store).
  if (fallback === 'ERR_INTERNAL' && isStorageErrno(err) && err.syscall) return storeIoError(err, { store: context.store });
  if (err && typeof err.code === 'string' && err.syscall) {
    return new ConveyorError(fallback === 'ERR_INTERNAL' ? 'ERR_STORE_IO' : fallback, message, { cause: error });
  }
  return new ConveyorError(fallback, message, { cause: error });
}
