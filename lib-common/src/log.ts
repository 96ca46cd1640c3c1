/**
 * Human and machine diagnostics on stderr. Text lines read
 * `tool: what failed: why (hint)`; with `--log-format=json` each message is
 * one JSON object per line carrying the stable error code.
 */
import { formatBytes } from './bytes.js';
import type { ConveyorError } from './errors.js';
import type { TextOutput } from './fd-output.js';

export type LogFormat = 'text' | 'json';

export class Logger {
  constructor(
    readonly tool: string,
    private readonly stream: Pick<TextOutput, 'write'>,
    readonly format: LogFormat = 'text',
    private readonly quiet = false,
  ) {}

  private emit(level: string, message: string, fields: Record<string, unknown> = {}): void {
    let text: string;
    if (this.format === 'json') {
      text = JSON.stringify({ type: 'log', v: 1, level, tool: this.tool, message, ...fields, time: new Date().toISOString() }) + '\n';
    } else {
      const prefix = level === 'warn' ? 'warning: ' : '';
      const hint = typeof fields.hint === 'string' ? ` (${fields.hint})` : '';
      text = `${this.tool}: ${prefix}${printable(message)}${printable(hint)}\n`;
    }
    // Live progress lines on the same terminal: the message goes above them, not through them.
    const progress = liveProgress.get(this.stream);
    if (progress) progress.writeAbove(text);
    else this.stream.write(text);
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

/** The Progress drawing live lines on a stream, so a Logger on the same stream writes above them. */
const liveProgress = new WeakMap<object, Progress>();

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
 * Progress on stderr only: NDJSON events with `--progress=json`, live lines
 * when stderr is a terminal, nothing otherwise. On a terminal, as `docker
 * pull`: one line per item in progress (a layer downloading, unpacking) with
 * bytes done of total, speed and ETA, redrawn in place (ANSI cursor moves);
 * an item that is done leaves a permanent line above them. Updates are
 * throttled so a fast download does not flood the stream; start and done
 * events always go out. Never throws (a write to a closed stderr is the
 * stream's business).
 */
export class Progress {
  private readonly lastSent = new Map<string, number>();
  private readonly live = new Map<string, LiveItem>();
  /** How many live lines the last draw left on the screen, above the cursor. */
  private drawnLines = 0;
  private lastDraw = 0;
  readonly mode: Exclude<ProgressMode, 'auto'>;

  constructor(
    private readonly tool: string,
    private readonly stream: Pick<TextOutput, 'write' | 'isTTY' | 'columns'>,
    mode: ProgressMode = 'auto',
    private readonly intervalMs = 200,
    private readonly clock: () => number = Date.now,
  ) {
    this.mode = mode === 'auto' ? (stream.isTTY ? 'bar' : 'none') : mode;
    if (this.mode === 'bar') liveProgress.set(stream, this);
  }

  /** Writes `text` (whole lines) above the live lines, which are redrawn below it; as it is when none are drawn. */
  writeAbove(text: string): void {
    if (this.drawnLines === 0) this.stream.write(text);
    else this.draw(this.clock(), [], text);
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
    const now = this.clock();
    const key = `${event.action}:${event.id}`;
    if (this.mode === 'json') {
      if (!force && now - (this.lastSent.get(key) ?? 0) < this.intervalMs) return;
      this.lastSent.set(key, now);
      this.stream.write(JSON.stringify({ type: 'progress', v: 1, tool: this.tool, phase, ...event, time: new Date(now).toISOString() }) + '\n');
      if (phase === 'done') this.lastSent.delete(key);
      return;
    }
    const item = this.live.get(key);
    if (phase === 'done') {
      this.live.delete(key);
      const took = item ? ` in ${formatDuration((now - item.started) / 1000)}` : '';
      const line = `${this.tool}: ${event.action} ${event.label ?? event.id} done${event.total ? ` (${formatBytes(event.total)}${took})` : ''}`;
      this.draw(now, [line]);
      return;
    }
    if (item) item.event = event;
    else this.live.set(key, { event, started: now, startBytes: event.current });
    if (force || now - this.lastDraw >= this.intervalMs) this.draw(now, []);
  }

  /** Redraws the live lines in place, with `permanent` lines written above them for good. */
  private draw(now: number, permanent: string[], above = ''): void {
    this.lastDraw = now;
    // A pty nobody sized (script(1), some CI) reports 0 columns: 80, as a terminal is by default.
    const width = Math.max(40, (this.stream.columns || 80) - 1);
    let out = (this.drawnLines > 0 ? `\x1b[${this.drawnLines}A\r\x1b[J` : '') + above;
    for (const line of permanent) out += `${printable(line).slice(0, width)}\n`;
    for (const item of this.live.values()) out += `${printable(liveLine(item, now)).slice(0, width)}\n`;
    this.drawnLines = this.live.size;
    if (out !== '') this.stream.write(out);
  }

  /** Clears the live lines so the next stderr message starts on a clean screen. */
  finish(): void {
    if (this.mode === 'bar' && this.drawnLines > 0) this.stream.write(`\x1b[${this.drawnLines}A\r\x1b[J`);
    this.drawnLines = 0;
    this.live.clear();
  }
}

interface LiveItem {
  event: ProgressEvent;
  started: number;
  /** Where the item stood when first seen (a resumed download starts past 0): speed counts from there. */
  startBytes: number;
}

/** `a5f3e81717fa: download  512.0kB / 1.09MB  1.2MB/s  ETA 1s`; without a total, bytes and speed only. */
export function liveLine(item: LiveItem, now: number): string {
  const { event } = item;
  const seconds = (now - item.started) / 1000;
  const rate = seconds > 0 ? (event.current - item.startBytes) / seconds : 0;
  let line = `${event.label ?? event.id.slice(0, 19)}: ${event.action}  ${formatBytes(event.current)}`;
  if (event.total) line += ` / ${formatBytes(event.total)} ${bar(event.current / event.total, 20)}`;
  if (rate > 0) {
    line += `  ${formatBytes(rate)}/s`;
    if (event.total && event.total > event.current) line += `  ETA ${formatDuration((event.total - event.current) / rate)}`;
  }
  return line;
}

/** `[=====>    ]`: done share of width, as docker's bar. */
export function bar(share: number, width: number): string {
  const filled = Math.max(0, Math.min(width, Math.floor(share * width)));
  return `[${'='.repeat(Math.max(0, filled - 1))}${filled > 0 ? '>' : ''}${' '.repeat(width - filled)}]`;
}

/** `45s`, `3m05s`, `1h02m`: short durations for ETAs. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
