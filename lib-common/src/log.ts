/**
 * Human and machine diagnostics on stderr. Text lines read
 * `tool: what failed: why (hint)`; with `--log-format=json` each message is
 * one JSON object per line carrying the stable error code.
 */
import type { Writable } from 'node:stream';
import { formatBytes } from './bytes.js';
import type { ConveyorError } from './errors.js';

export type LogFormat = 'text' | 'json';

export class Logger {
  constructor(
    readonly tool: string,
    private readonly stream: Writable,
    readonly format: LogFormat = 'text',
    private readonly quiet = false,
  ) {}

  private emit(level: string, message: string, fields: Record<string, unknown> = {}): void {
    if (this.format === 'json') {
      this.stream.write(JSON.stringify({ type: 'log', v: 1, level, tool: this.tool, message, ...fields, time: new Date().toISOString() }) + '\n');
    } else {
      const prefix = level === 'warn' ? 'warning: ' : '';
      const hint = typeof fields.hint === 'string' ? ` (${fields.hint})` : '';
      this.stream.write(`${this.tool}: ${prefix}${printable(message)}${printable(hint)}\n`);
    }
  }

  info(message: string, fields?: Record<string, unknown>): void {
    if (!this.quiet) this.emit('info', message, fields);
  }

  warn(message: string, fields?: Record<string, unknown>): void {
    this.emit('warn', message, fields);
  }

  error(error: ConveyorError): void {
    this.emit('error', error.message, { code: error.code, hint: error.hint, exitCode: error.exitCode, ...(error.details ?? {}) });
  }
}

/**
 * Messages quote registries, manifests and layers: hostile text. Control
 * characters (terminal escape sequences, carriage returns) become `?` so they
 * cannot rewrite the user's terminal.
 */
export function printable(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  return text.replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, '?');
}

export type ProgressMode = 'auto' | 'json' | 'bar' | 'none';

export interface ProgressEvent {
  /** What is being worked on: a digest, a path, a container id. */
  id: string;
  /** The kind of work: download, verify, unpack, mount, ... */
  action: string;
  /** Bytes (or items) done so far. */
  current: number;
  /** Bytes (or items) in all, when known. */
  total?: number;
  /** Free-form label for humans (the layer's short digest, the image ref). */
  label?: string;
}

/**
 * Progress on stderr only: NDJSON events with `--progress=json`, a redrawn line
 * when stderr is a terminal, nothing otherwise. Updates are throttled so a fast
 * download does not flood the stream; start and done events always go out.
 */
export class Progress {
  private readonly lastSent = new Map<string, number>();
  private readonly active = new Map<string, ProgressEvent>();
  private lastDraw = 0;
  readonly mode: Exclude<ProgressMode, 'auto'>;

  constructor(
    private readonly tool: string,
    private readonly stream: Writable & { isTTY?: boolean; columns?: number },
    mode: ProgressMode = 'auto',
    private readonly intervalMs = 200,
  ) {
    this.mode = mode === 'auto' ? (stream.isTTY ? 'bar' : 'none') : mode;
  }

  get enabled(): boolean {
    return this.mode !== 'none';
  }

  start(event: ProgressEvent): void {
    this.send('start', event, true);
  }

  update(event: ProgressEvent): void {
    this.send('update', event, false);
  }

  done(event: ProgressEvent): void {
    this.send('done', event, true);
  }

  private send(phase: 'start' | 'update' | 'done', event: ProgressEvent, force: boolean): void {
    if (this.mode === 'none') return;
    const now = Date.now();
    const key = `${event.action}:${event.id}`;
    if (!force && now - (this.lastSent.get(key) ?? 0) < this.intervalMs) {
      if (this.mode === 'bar') this.active.set(key, event);
      return;
    }
    this.lastSent.set(key, now);
    if (this.mode === 'json') {
      this.stream.write(JSON.stringify({ type: 'progress', v: 1, tool: this.tool, phase, ...event, time: new Date(now).toISOString() }) + '\n');
      if (phase === 'done') this.lastSent.delete(key);
      return;
    }
    if (phase === 'done') this.active.delete(key);
    else this.active.set(key, event);
    if (phase === 'done') {
      this.clearLine();
      this.stream.write(`${this.tool}: ${event.action} ${event.label ?? event.id} done${event.total ? ` (${formatBytes(event.total)})` : ''}\n`);
    }
    if (force || now - this.lastDraw >= this.intervalMs) this.draw(now);
  }

  private clearLine(): void {
    this.stream.write('\r\x1b[K');
  }

  private draw(now: number): void {
    this.lastDraw = now;
    this.clearLine();
    if (this.active.size === 0) return;
    const width = Math.max(40, (this.stream.columns ?? 80) - 1);
    const parts = [...this.active.values()].map((e) => {
      const pct = e.total ? `${Math.floor((100 * e.current) / e.total)}%` : formatBytes(e.current);
      return `${e.label ?? e.id.slice(0, 19)} ${e.action} ${pct}`;
    });
    this.stream.write(parts.join(' | ').slice(0, width));
  }

  /** Clears the bar line so the next stderr message starts on a clean line. */
  finish(): void {
    if (this.mode === 'bar' && this.active.size > 0) this.clearLine();
    this.active.clear();
  }
}
