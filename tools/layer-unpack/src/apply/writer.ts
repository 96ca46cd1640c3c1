/**
 * Main-thread side of the file-creation threads (writer-worker.ts). File
 * and symlink creations are spread over N threads (bounded parallelism; the
 * file system overlaps their waits), each thread running its queue in order;
 * directories are created at once on the calling thread, so they always exist
 * before anything queued inside them. The Applier waits for the queues
 * (drain) before any step that must see the disk as the queued operations
 * leave it (lstat of a path this layer wrote, removals, hardlinks, whiteouts,
 * batches, directory metadata); different queued operations never touch the
 * same path. Bounded memory: at most MAX_INFLIGHT_BYTES of file data are
 * queued or in flight, and an operation whose data does not fit in its ring
 * holds the parser back too (room()). File data
 * reaches a thread through its lane's shared ring; an operation whose data
 * does not fit in the ring yet waits, uncopied, until the thread has freed
 * room (no private copy per chunk: those would pile up as garbage in the
 * thread, whose collector runs seldom).
 *
 * The threads start only when a layer turns out to need them: the first
 * INLINE_OPS operations and INLINE_BYTES of data run inline, as they are
 * queued (a thread costs tens of milliseconds of CPU to start, more than a
 * small layer's whole unpack); a file large enough to be streamed starts them
 * at once. With 0 threads every operation runs inline. A thread that ended its
 * layer cleanly (everything acknowledged, no file left open) is kept idle, with
 * its ring, for the next layer's Writer (up to MAX_IDLE_THREADS; unref'd, so
 * they never keep the process alive).
 *
 * Threads are shared by the layers unpacking at once (issue 17: each costs
 * ~9 MB of RSS plus its 4 MiB ring, and two layers of small files used four):
 * at most max(N, Writers using threads) are alive, idle or in use. A lane holds
 * its thread alone while it uses it, so a thread serves one Writer at a time
 * and its ring is empty when it changes hands. A Writer takes threads from the
 * pool or starts them under that cap; else it uses the lanes that have one, and
 * a Writer that has none waits for one (its operations are held, which holds
 * its parser back): a Writer with two or more gives one up as soon as that
 * lane is idle (nothing posted unacknowledged, no file open in it).
 */
import { Worker } from 'node:worker_threads';
import { THREAD_LIMITS } from '../young-gc.js';
import { closeAll, runOp } from './writer-ops.js';

export interface FileMetaOp {
  uid: number;
  gid: number;
  mode: number;
  atime: number;
  mtime: number;
  chown: boolean;
}

export type WriterOp =
  | { op: 'mkdir'; path: string }
  | ({ op: 'file'; path: string; data?: Uint8Array; ring?: RingSlice } & FileMetaOp)
  | { op: 'open'; id: number; path: string }
  | { op: 'write'; id: number; data?: Uint8Array; ring?: RingSlice }
  | ({ op: 'close'; id: number } & FileMetaOp)
  | ({ op: 'symlink'; path: string; target: string } & FileMetaOp);

/** Descriptor ids are unique in the process (inline writers share one table). */
let nextId = 1;

const MAX_INFLIGHT_BYTES = 8 * 1024 * 1024;
/** Work done inline before the threads start (see the top of this file). */
const INLINE_OPS = 256;
const INLINE_BYTES = 1024 * 1024;
const BATCH_OPS = 128;
const BATCH_BYTES = 1024 * 1024;

/** [offset, length, ring bytes consumed (length plus any skipped tail)] in the lane's shared ring. */
export type RingSlice = [number, number, number];

/** Shared memory per writer thread for file data: one copy, no allocation per file. */
const RING_BYTES = 4 * 1024 * 1024;

export interface WriterError {
  message: string;
  code?: string;
  syscall?: string;
  path?: string;
}

/** How long stop() waits for a thread to end (see stop). */
const STOP_TIMEOUT_MS = 2000;

/** A started thread and its ring; `owner` routes its messages to the lane using it, none while idle. */
interface Thread {
  worker: Worker;
  ring: Uint8Array;
  /** Ended or being ended: no longer counted alive. */
  dead?: boolean;
  /** The lane using it, none while idle. */
  lane?: Lane;
  owner?: {
    message(msg: { done?: number; bytes?: number; ring?: number; error?: WriterError }): void;
    error(error: Error): void;
    exit(code: number): void;
  };
}

/** Threads kept between Writers (see the top of this file). */
const MAX_IDLE_THREADS = 4;
const idleThreads: Thread[] = [];
/** Threads alive, idle or in use (the shared cap bounds them), the most so far, and the Writers using threads now. */
let liveThreads = 0;
let peakLiveThreads = 0;
let threadedWriters = 0;
/** Lanes of Writers that have no thread, waiting for one, first come first served. */
const waiting: Lane[] = [];
/** Threads in use, each by one lane. */
const attached = new Set<Thread>();

/** Threads idle in the pool (tested). */
export function idleThreadCount(): number {
  return idleThreads.length;
}

/** Writer threads alive now and the most alive at once so far, idle or in use (tested: the shared cap). */
export function writerThreadCounts(): { alive: number; peak: number } {
  return { alive: liveThreads, peak: peakLiveThreads };
}

function newThread(): Thread {
  const ring = new Uint8Array(new SharedArrayBuffer(RING_BYTES));
  const worker = new Worker(new URL('./writer-worker.js', import.meta.url), { workerData: { ring: ring.buffer }, resourceLimits: THREAD_LIMITS });
  const thread: Thread = { worker, ring };
  liveThreads++;
  peakLiveThreads = Math.max(peakLiveThreads, liveThreads);
  worker.on('message', (msg) => thread.owner?.message(msg));
  worker.on('error', (error) => thread.owner?.error(error));
  worker.on('exit', (code) => {
    dropThread(thread);
    thread.owner?.exit(code);
  });
  return thread;
}

/** A thread ended (or being ended): no longer alive, idle or in use; a waiting lane may start one in its place. */
function dropThread(thread: Thread): void {
  if (thread.dead) return;
  thread.dead = true;
  liveThreads--;
  attached.delete(thread);
  const i = idleThreads.indexOf(thread);
  if (i >= 0) idleThreads.splice(i, 1);
  serveWaiting();
}

/** The most threads alive when `lane` asks for one: its Writer's own count, or one per Writer using threads. */
const capFor = (lane: Lane): number => Math.max(lane.threads, threadedWriters);

/** A thread for `lane` now (an idle one, or a new one under the cap), else undefined. */
function freeThread(lane: Lane): Thread | undefined {
  const idle = idleThreads.pop();
  if (idle) return idle;
  return liveThreads < capFor(lane) ? newThread() : undefined;
}

/** Whether `lane` can give its thread to another now: nothing posted unacknowledged, nothing staged in its ring, no file open in it. */
const canRelease = (lane: Lane): boolean => lane.thread !== undefined && lane.openFiles === 0 && lane.queue.length === 0 && lane.acked === lane.posted;

/** Gives `thread`, idle and ownerless, to the first waiting lane, else to the pool (or ends it). */
function handOver(thread: Thread): void {
  const next = waiting.shift();
  if (next) {
    next.waiting = false;
    next.grant(thread);
  } else if (idleThreads.length < MAX_IDLE_THREADS) {
    thread.worker.unref();
    idleThreads.push(thread);
  } else {
    dropThread(thread);
    void thread.worker.terminate();
  }
}

/** Takes the thread from `lane` (canRelease) and hands it over; the lane waits again when it still has work held. */
function release(lane: Lane): void {
  const thread = lane.thread!;
  lane.thread = undefined;
  lane.yielding = false;
  thread.owner = undefined;
  thread.lane = undefined;
  attached.delete(thread);
  thread.worker.unref();
  handOver(thread);
  if (lane.held.length > 0) wait(lane);
}

function wait(lane: Lane): void {
  if (lane.waiting) return;
  lane.waiting = true;
  waiting.push(lane);
  serveWaiting();
}

/**
 * Finds threads for the waiting lanes: idle or new ones under the cap, else one of a Writer using
 * two or more, taken as soon as that lane is idle (`yielding` stops it getting new work).
 */
function serveWaiting(): void {
  while (waiting.length > 0) {
    const thread = freeThread(waiting[0]);
    if (!thread) break;
    handOver(thread);
  }
  if (waiting.length === 0) return;
  const perWriter = new Map<object, Lane[]>();
  for (const thread of attached) {
    const lane = thread.lane!;
    const lanes = perWriter.get(lane.owner) ?? [];
    lanes.push(lane);
    perWriter.set(lane.owner, lanes);
  }
  let wanted = waiting.length - [...perWriter.values()].reduce((n, lanes) => n + lanes.filter((l) => l.yielding).length, 0);
  for (const lanes of perWriter.values()) {
    if (wanted <= 0) return;
    // A Writer keeps one thread: it gives up only what it has beyond one (a failed one gives nothing: its stop() ends them).
    if (lanes.filter((l) => l.thread && !l.yielding).length < 2 || lanes.some((l) => l.failed())) continue;
    const lane = lanes.find((l) => l.thread && !l.yielding && l.openFiles === 0);
    if (!lane) continue;
    wanted--;
    lane.yielding = true;
    if (canRelease(lane)) release(lane);
  }
}

interface Lane {
  /** Taken (from the pool, started, or handed over) when the lane is given an operation; given up when idle and another Writer waits. */
  thread: Thread | undefined;
  /** Its Writer (identity only), that Writer's thread count, whether it failed, and how a thread is given to this lane. */
  owner: object;
  threads: number;
  failed(): boolean;
  grant(thread: Thread): void;
  /** In the waiting list; giving its thread up as soon as idle (gets no new operations meanwhile). */
  waiting: boolean;
  yielding: boolean;
  /** Streamed files open in its thread (opened and not yet closed, as posted): the lane keeps the thread. */
  openFiles: number;
  queue: WriterOp[];
  transfer: ArrayBuffer[];
  queuedBytes: number;
  posted: number;
  acked: number;
  ringHead: number;
  ringAcked: number;
  /** Operations waiting for room in the ring (in order: every later operation of the lane waits behind them). */
  held: { op: WriterOp; chunks: Uint8Array[]; length: number }[];
}

export class Writer {
  private readonly lanes: Lane[] = [];
  private nextLane = 0;
  private readonly laneOf = new Map<number, Lane>();
  private inflightBytes = 0;
  private flushScheduled = false;
  private waiters: (() => void)[] = [];
  private error: WriterError | undefined;
  /** Operations and bytes run inline so far; the threads start past INLINE_OPS or INLINE_BYTES. */
  private inlineOps = 0;
  private inlineBytes = 0;
  private threaded = false;
  private onError: (error: WriterError) => void = () => undefined;

  /** `threads` file-creation threads; 0 runs everything inline. */
  constructor(threads = 2) {
    for (let i = 0; i < threads; i++) {
      const lane: Lane = {
        thread: undefined,
        owner: this,
        threads,
        failed: () => this.error !== undefined,
        grant: (thread) => {
          this.bind(lane, thread);
          this.unhold(lane);
          this.wake();
        },
        waiting: false,
        yielding: false,
        openFiles: 0,
        queue: [],
        transfer: [],
        queuedBytes: 0,
        posted: 0,
        acked: 0,
        ringHead: 0,
        ringAcked: 0,
        held: [],
      };
      this.lanes.push(lane);
    }
  }

  /** Called once with the first failed operation. */
  setErrorHandler(handler: (error: WriterError) => void): void {
    this.onError = handler;
  }

  get failed(): WriterError | undefined {
    return this.error;
  }

  get idle(): boolean {
    return this.lanes.every((l) => l.queue.length === 0 && l.held.length === 0 && l.acked === l.posted);
  }

  /** Threads this Writer used, started or taken from the pool (tested: none for a small layer). */
  get threadsUsed(): number {
    return this.used;
  }

  private used = 0;

  /** Most bytes of file data queued or in flight at once so far (what MAX_INFLIGHT_BYTES bounds; tested). */
  peakInflightBytes = 0;

  /**
   * True when too much data is in flight, or an operation waits for room in its ring: await
   * room() before reading more. Held data is the parser's chunks, uncopied; held long, they
   * outlive the main thread's young-generation collections and stay until a full one (young-gc.ts).
   */
  get full(): boolean {
    return this.inflightBytes > MAX_INFLIGHT_BYTES || this.holding;
  }

  private get holding(): boolean {
    return this.lanes.some((l) => l.held.length > 0);
  }

  /** Gives the lane `thread` (idle: nothing in flight, its ring empty). */
  private bind(lane: Lane, thread: Thread): void {
    const worker = thread.worker;
    thread.lane = lane;
    attached.add(thread);
    thread.owner = {
      message: (msg) => {
        if (msg.error) {
          this.fail(msg.error);
          return;
        }
        lane.acked += msg.done ?? 0;
        lane.ringAcked += msg.ring ?? 0;
        this.inflightBytes -= msg.bytes ?? 0;
        // Keep the process alive only while the thread has work.
        if (lane.acked === lane.posted) worker.unref();
        // Asked to give its thread up: now that it is idle, unless nobody waits any more.
        if (lane.yielding && waiting.length === 0) lane.yielding = false;
        if (lane.yielding && canRelease(lane) && !this.error) release(lane);
        else if (lane.held.length > 0) this.unhold(lane);
        this.wake();
      },
      error: (error) => this.fail({ message: error.message }),
      exit: (code) => {
        if (lane.acked < lane.posted) this.fail({ message: `file writer thread exited (${code}) with work pending` });
      },
    };
    lane.thread = thread;
    this.used++;
  }

  private fail(error: WriterError): void {
    if (this.error) return;
    this.error = error;
    // Nothing more will be acknowledged: never let a failed thread keep the process alive.
    for (const lane of this.lanes) lane.thread?.worker.unref();
    this.onError(error);
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private inline(op: WriterOp): void {
    if (this.error) return;
    try {
      runOp(op);
    } catch (error) {
      closeAll();
      const err = error as NodeJS.ErrnoException;
      this.fail({ message: err.message, code: err.code, syscall: err.syscall, path: err.path });
    }
  }

  private push(lane: Lane | undefined, op: WriterOp, chunks?: Uint8Array[], length = 0): void {
    if (!lane) {
      if (chunks && length > 0) (op as { data?: Uint8Array }).data = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, length);
      this.inline(op);
      return;
    }
    if (chunks && length > 0) {
      this.inflightBytes += length;
      this.peakInflightBytes = Math.max(this.peakInflightBytes, this.inflightBytes);
    }
    if (!lane.thread || lane.held.length > 0 || (length > 0 && !this.stage(lane, op as { data?: Uint8Array; ring?: RingSlice }, chunks!, length))) {
      lane.held.push({ op, chunks: chunks ?? [], length });
      return;
    }
    this.enqueue(lane, op, length);
  }

  private enqueue(lane: Lane, op: WriterOp, length: number): void {
    if (op.op === 'open') lane.openFiles++;
    else if (op.op === 'close') lane.openFiles--;
    lane.queuedBytes += length;
    lane.queue.push(op);
    if (lane.queue.length >= BATCH_OPS || lane.queuedBytes >= BATCH_BYTES) this.flushLane(lane);
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  /** Stages the held operations that now fit in the ring, in order, and posts them. */
  private unhold(lane: Lane): void {
    if (!lane.thread) return;
    while (lane.held.length > 0) {
      const { op, chunks, length } = lane.held[0];
      if (length > 0 && !this.stage(lane, op as { data?: Uint8Array; ring?: RingSlice }, chunks, length)) break;
      lane.held.shift();
      this.enqueue(lane, op, length);
    }
    this.flushLane(lane);
  }

  private flushLane(lane: Lane): void {
    if (lane.queue.length === 0 || this.error || !lane.thread) return;
    const worker = lane.thread.worker;
    const ops = lane.queue;
    const transfer = lane.transfer;
    lane.queue = [];
    lane.transfer = [];
    lane.queuedBytes = 0;
    lane.posted += ops.length;
    worker.ref();
    worker.postMessage(ops, transfer);
  }

  flush(): void {
    for (const lane of this.lanes) this.flushLane(lane);
  }

  /** The lane for an operation carrying `bytes` of data; undefined: run it inline. */
  private pick(bytes: number): Lane | undefined {
    if (this.lanes.length === 0) return undefined;
    if (!this.threaded) {
      this.inlineOps++;
      this.inlineBytes += bytes;
      if (this.inlineOps <= INLINE_OPS && this.inlineBytes <= INLINE_BYTES) return undefined;
      // Everything run inline is done (inline operations are synchronous): what follows is queued after it.
      this.threaded = true;
      threadedWriters++;
    }
    // Round robin over the lanes that have a thread (not giving it up) or can get one now: the
    // ring comes with the thread, and stage() writes into it before the first flush.
    const n = this.lanes.length;
    for (let i = 0; i < n; i++) {
      const lane = this.lanes[(this.nextLane + i) % n];
      if (lane.waiting) return lane;
      if (lane.thread ? lane.yielding : !this.take(lane)) continue;
      this.nextLane = (this.nextLane + i + 1) % n;
      return lane;
    }
    // None: the next lane waits for one (see the top of this file); its operations are held meanwhile.
    const lane = this.lanes.find((l) => !l.thread) ?? this.lanes[this.nextLane];
    if (!lane.thread) wait(lane);
    return lane;
  }

  /** Gives `lane` a free thread if there is one now (never ahead of a waiting lane). */
  private take(lane: Lane): boolean {
    if (waiting.length > 0) return false;
    const thread = freeThread(lane);
    if (thread) this.bind(lane, thread);
    return thread !== undefined;
  }

  /**
   * Copies file data where the thread can read it: into the lane's shared ring
   * (one memcpy, no allocation); false when the ring has no room for it yet.
   * Data too large for the ring (over a quarter of it: not sent by file-sink.ts)
   * goes into a private buffer that is transferred (never a view of a pooled or
   * shared Node buffer).
   */
  private stage(lane: Lane, op: { data?: Uint8Array; ring?: RingSlice }, chunks: Uint8Array[], length: number): boolean {
    const ring = lane.thread!.ring;
    const size = ring.length;
    const pos = lane.ringHead % size;
    const pad = pos + length > size ? size - pos : 0;
    const need = pad + length;
    if (length <= size / 4 && need <= size - (lane.ringHead - lane.ringAcked)) {
      let offset = (pos + pad) % size;
      op.ring = [offset, length, need];
      for (const chunk of chunks) {
        ring.set(chunk, offset);
        offset += chunk.length;
      }
      lane.ringHead += need;
      return true;
    }
    if (length <= size / 4) return false;
    const data = new Uint8Array(length);
    let offset = 0;
    for (const chunk of chunks) {
      data.set(chunk, offset);
      offset += chunk.length;
    }
    op.data = data;
    lane.transfer.push(data.buffer as ArrayBuffer);
    return true;
  }

  /** Directories are created at once, on the calling thread. */
  mkdir(path: string): void {
    this.inline({ op: 'mkdir', path });
  }

  file(path: string, chunks: Uint8Array[], length: number, meta: FileMetaOp): void {
    this.push(this.pick(length), { op: 'file', path, ...meta }, chunks, length);
  }

  open(path: string): number {
    const id = nextId++;
    // Streamed files are the large ones: worth a thread from the start.
    const lane = this.pick(Number.POSITIVE_INFINITY);
    if (lane) this.laneOf.set(id, lane);
    this.push(lane, { op: 'open', id, path });
    return id;
  }

  write(id: number, chunk: Uint8Array): void {
    this.push(this.laneOf.get(id), { op: 'write', id }, [chunk], chunk.length);
  }

  close(id: number, meta: FileMetaOp): void {
    const lane = this.laneOf.get(id);
    this.laneOf.delete(id);
    this.push(lane, { op: 'close', id, ...meta });
  }

  symlink(path: string, target: string, meta: FileMetaOp): void {
    this.push(this.pick(0), { op: 'symlink', path, target, ...meta });
  }

  async room(): Promise<void> {
    this.flush();
    while (this.full && !this.error) await new Promise<void>((r) => this.waiters.push(r));
  }

  /** Waits until every queued operation has run. Throws nothing: check `failed` after. */
  async drain(): Promise<void> {
    this.flush();
    while (!this.error && this.lanes.some((l) => l.acked < l.posted || l.held.length > 0)) await new Promise<void>((r) => this.waiters.push(r));
  }

  async stop(): Promise<void> {
    // Clean: nothing pending, failed or left open (a file whose close never came has its descriptor in the thread).
    const clean = !this.error && this.laneOf.size === 0;
    if (this.threaded) {
      this.threaded = false;
      threadedWriters--;
    }
    for (const lane of this.lanes) {
      if (!lane.waiting) continue;
      lane.waiting = false;
      waiting.splice(waiting.indexOf(lane), 1);
    }
    await Promise.all(
      this.lanes.map(async (lane) => {
        const thread = lane.thread;
        lane.thread = undefined;
        if (!thread) return;
        thread.owner = undefined;
        thread.lane = undefined;
        attached.delete(thread);
        const worker = thread.worker;
        if (clean && lane.queue.length === 0 && lane.held.length === 0 && lane.acked === lane.posted) {
          // To a waiting Writer, else the pool.
          worker.unref();
          handOver(thread);
          return;
        }
        dropThread(thread);
        // Seen under load on Node 20: terminate() of a thread that is ending on its own never
        // settles, and its handle no longer keeps the loop alive, so the process exited 13
        // ("unsettled top-level await") with the layer's error unreported. The first of
        // terminate(), the 'exit' event and a ref'd timer ends the wait; a thread still
        // running then dies with the process.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          worker.terminate().catch(() => undefined),
          new Promise<void>((resolve) => worker.once('exit', () => resolve())),
          new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_TIMEOUT_MS))),
        ]);
        clearTimeout(timer);
      }),
    );
  }
}
