/**
 * Step progress on stderr. Plain (the default, on a terminal or not, as
 * Docker's classic builder): `Step 3/9 : RUN …`, ` ---> Using cache`, the
 * RUN's output as it comes, ` ---> 1a2b3c4d5e6f`. JSON (`--progress=json`):
 * the project's progress events (lib-common/log.ts's shape, one object per
 * line), `action: "step"` with `phase` start/done per step and `action:
 * "output"` updates carrying the RUN's output (never throttled: it is the
 * build log). Quiet: nothing but errors.
 */
import type { Writable } from 'node:stream';
import { printable } from '@conveyor/lib-common/log';

export type StepProgressMode = 'plain' | 'json' | 'none';

export interface StepInfo {
  /** 1-based, over every step of the stages being built. */
  index: number;
  total: number;
  /** The instruction as written. */
  instruction: string;
  /** Dockerfile line. */
  line: number;
  /** Stage name or index. */
  stage: string;
}

export class StepProgress {
  private current: StepInfo | undefined;
  private outputBytes = 0;

  constructor(
    private readonly stream: Writable,
    readonly mode: StepProgressMode,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  private event(phase: 'start' | 'update' | 'done', fields: Record<string, unknown>): void {
    this.stream.write(`${JSON.stringify({ type: 'progress', v: 1, tool: 'img-build', phase, ...fields, time: this.clock().toISOString() })}\n`);
  }

  private stepFields(step: StepInfo): Record<string, unknown> {
    return { id: `step-${step.index}`, action: 'step', current: step.index, total: step.total, label: step.instruction, line: step.line, stage: step.stage };
  }

  start(step: StepInfo): void {
    this.current = step;
    this.outputBytes = 0;
    if (this.mode === 'plain') this.stream.write(`Step ${step.index}/${step.total} : ${printable(step.instruction)}\n`);
    else if (this.mode === 'json') this.event('start', this.stepFields(step));
  }

  /** The step was found in the cache. */
  cached(): void {
    if (this.mode === 'plain') this.stream.write(' ---> Using cache\n');
  }

  /** A container started for the step. */
  running(id: string): void {
    if (this.mode === 'plain') this.stream.write(` ---> Running in ${id.slice(0, 12)}\n`);
  }

  output(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    if (this.mode === 'plain') this.stream.write(chunk);
    else if (this.mode === 'json' && this.current) {
      this.outputBytes += chunk.length;
      this.event('update', { id: `step-${this.current.index}`, action: 'output', current: this.outputBytes, stream, data: chunk.toString('utf8') });
    }
  }

  /** Other tools' messages (img-fetch, layer-unpack): passed on as they are in plain mode, dropped from JSON (their own events are not ours). */
  toolMessage(chunk: Buffer): void {
    if (this.mode === 'plain') this.stream.write(chunk);
  }

  done(result: { cached: boolean; layer?: string; config?: string }): void {
    const step = this.current;
    if (!step) return;
    if (this.mode === 'plain') {
      const id = result.layer ?? result.config;
      if (id) this.stream.write(` ---> ${id.replace(/^sha256:/, '').slice(0, 12)}\n`);
    } else if (this.mode === 'json') {
      this.event('done', { ...this.stepFields(step), cached: result.cached, ...(result.layer ? { layer: result.layer } : {}) });
    }
    this.current = undefined;
  }

  /** The build's end: the image digest and tags. */
  finished(digest: string, tags: string[]): void {
    if (this.mode === 'plain') {
      this.stream.write(`Successfully built ${digest.replace(/^sha256:/, '').slice(0, 12)}\n`);
      for (const tag of tags) this.stream.write(`Successfully tagged ${tag}\n`);
    } else if (this.mode === 'json') {
      this.event('done', { id: digest, action: 'build', current: 1, total: 1, label: tags[0] ?? digest, digest, tags });
    }
  }
}
