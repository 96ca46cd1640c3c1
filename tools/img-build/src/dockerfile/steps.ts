/**
 * The contract between the Dockerfile front end (parse.ts, expand.ts) and the
 * builder: what a Dockerfile says, instruction by instruction, once parsed and
 * (for the instructions Docker expands) with variables substituted.
 *
 * parseDockerfile() turns text into `Instruction`s (syntax only: nothing is
 * expanded, so a failure names the line). resolveStep() turns one instruction
 * into a typed `Step`, expanding `$VAR`/`${VAR:-x}` in the instructions Docker
 * expands (ADD, ARG, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME,
 * WORKDIR; RUN, CMD and ENTRYPOINT are left to the shell) with the builder's
 * current variables.
 */

/** A heredoc attached to RUN or COPY/ADD (`RUN <<EOF` … `EOF`). */
export interface Heredoc {
  /** The word after `<<` (or `<<-`), quotes removed. */
  name: string;
  /** The body, each line ending in \n; with `<<-` leading tabs removed. */
  content: string;
  /** False when the word was quoted (`<<'EOF'`, `<<"EOF"`): no expansion in the body. */
  expand: boolean;
}

/** One instruction as written: syntax only, nothing expanded. */
export interface Instruction {
  /** Upper-cased keyword: FROM, RUN, COPY, … */
  keyword: string;
  /** 1-based line the instruction starts on, and the line it ends on (continuations, heredocs). */
  line: number;
  endLine: number;
  /** `--name=value` flags before the arguments, in order (values unexpanded; `--link` alone is value 'true' and `bare`). */
  flags: { name: string; value: string; bare?: boolean }[];
  /** The text after the keyword and the flags, continuations joined, heredoc bodies removed. */
  rest: string;
  /** The JSON (exec) form's array when `rest` is a JSON array of strings, else undefined (HEALTHCHECK: the part after CMD). */
  json?: string[];
  heredocs: Heredoc[];
  /** The instruction's text as written (continuations joined), for history `created_by` and errors. */
  original: string;
  /** The Dockerfile's name as given to parseDockerfile, for errors (`<file>:<line>: …`). */
  file?: string;
}

export interface Directives {
  /** `# syntax=` (recorded, not acted on). */
  syntax?: string;
  /** `# escape=` : the escape character, `\` by default or `` ` ``. */
  escape: '\\' | '`';
  /** `# check=` (recorded, not acted on). */
  check?: string;
}

export interface Dockerfile {
  directives: Directives;
  instructions: Instruction[];
  /** The name errors use (parseDockerfile's `file` option, `Dockerfile` by default). */
  file?: string;
  /** What Docker warns about but builds (`<file>:<line>: empty continuation line in …`), for stderr. */
  warnings?: string[];
}

/** The variables in scope for expansion: undefined when unset (not the same as ''). */
export type Lookup = (name: string) => string | undefined;

interface StepBase {
  line: number;
  /** `RUN apt-get …` as Docker writes it in history created_by (before the builder's `/bin/sh -c` prefix). */
  original: string;
}

export type Step =
  | (StepBase & { kind: 'FROM'; image: string; name?: string; platform?: string })
  | (StepBase & {
      kind: 'RUN';
      /** Exec form: the argv. Shell form: undefined, and `script` holds the command. */
      exec?: string[];
      script?: string;
      heredocs: Heredoc[];
      /** --network=default|none|host (others refused by resolveStep). */
      network?: 'default' | 'none' | 'host';
    })
  | (StepBase & {
      kind: 'COPY' | 'ADD';
      /** Source paths or patterns (context-relative, or in the `from` stage/image), expanded. */
      sources: string[];
      /** Destination as written after expansion (relative ones are against WORKDIR: the builder's job). */
      dest: string;
      /** Inline files from heredocs (`COPY <<EOF /dest`), by name. */
      heredocs: Heredoc[];
      /** --from: a stage name or index, or an image reference (the builder tells which). */
      from?: string;
      /** --chown as written after expansion (`user`, `uid:gid`, `name:group`); absent when it expanded to nothing. */
      chown?: string;
      /** --chmod: octal digits only (resolveStep refuses symbolic modes); absent when it expanded to nothing. */
      chmod?: string;
      link?: boolean;
      /** ADD --checksum=sha256:… for a URL source. */
      checksum?: string;
      keepGitDir?: boolean;
    })
  | (StepBase & { kind: 'ENV'; pairs: [string, string][] })
  | (StepBase & { kind: 'ARG'; args: { name: string; default?: string }[] })
  | (StepBase & { kind: 'LABEL'; pairs: [string, string][] })
  | (StepBase & { kind: 'WORKDIR'; path: string })
  /** `user` may be '' (a variable that expanded to nothing): the default user, as Docker sets it. */
  | (StepBase & { kind: 'USER'; user: string })
  /** Exec form (or an empty instruction, which clears the setting: exec []) or the shell form's `script`. */
  | (StepBase & { kind: 'ENTRYPOINT' | 'CMD'; exec?: string[]; script?: string })
  /** Expanded and checked: `PORT`, `PORT/proto` or `LOW-HIGH[/proto]` (proto tcp/udp/sctp, any case); may be empty. */
  | (StepBase & { kind: 'EXPOSE'; ports: string[] })
  | (StepBase & { kind: 'VOLUME'; paths: string[] })
  | (StepBase & { kind: 'STOPSIGNAL'; signal: string })
  | (StepBase & { kind: 'SHELL'; shell: string[] })
  | (StepBase & {
      kind: 'HEALTHCHECK';
      /** Docker's config Healthcheck: Test ["NONE"] or ["CMD", …] / ["CMD-SHELL", "…"]; durations in nanoseconds. */
      healthcheck: { Test: string[]; Interval?: number; Timeout?: number; StartPeriod?: number; StartInterval?: number; Retries?: number };
    })
  | (StepBase & { kind: 'ONBUILD'; instruction: string })
  | (StepBase & { kind: 'MAINTAINER'; author: string });
