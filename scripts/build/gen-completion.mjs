#!/usr/bin/env node
/**
 * Writes bash and zsh completion for every tool: OUT/conveyor.bash (one `complete -F` for all
 * tools) and OUT/_conveyor (a `#compdef` function). The flags come from each tool's own flag
 * specification (the tool run with CONVEYOR_DUMP_FLAGS=1 prints what it passes to runCli, so the
 * tools must be built); value hints come from its --help placeholders (`--root DIR`); positional
 * arguments from its Usage line (CONTAINER: names and ids from ctr-ls -a; IMAGE, REFERENCE,
 * PATTERN, SOURCE: references from img-ls; VOLUME: names from vol-ls). Usage: node scripts/build/gen-completion.mjs [OUT]
 * (default: completion). A tool that fails to dump its flags fails the run (exit 1, naming it).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Values of flags whose choices are closed lists that no placeholder names: runCli's checks of
 * --log-format and --progress, the pull and restart policies.
 */
const FLAG_VALUES = {
  'log-format': ['text', 'json'],
  progress: ['auto', 'json', 'bar', 'none'],
  pull: ['always', 'missing', 'never'],
  restart: ['no', 'on-failure', 'always', 'unless-stopped'],
};

/** A --help placeholder that names a kind of value the shell can complete. */
const PLACEHOLDER_KINDS = { DIR: '@dir', FILE: '@file', PATH: '@file', SIGNAL: '@signal' };

/** Flags whose DIR or PATH is inside the container, where the host's file names mean nothing. */
const CONTAINER_PATHS = new Set(['workdir']);

/** The Usage line's first positional placeholder, as the kind of word to offer. */
const POSITIONAL_KINDS = { CONTAINER: 'container', VOLUME: 'volume', IMAGE: 'image', REFERENCE: 'image', PATTERN: 'image', SOURCE: 'image', FILE: 'file' };

/** Each flag's help line: `  -j, --jobs N   parallel downloads` → {jobs: {placeholder: 'N', text: 'parallel downloads'}}. */
export function helpFlagLines(help) {
  const flags = {};
  for (const line of help.split('\n')) {
    const match = /^\s+(?:-[a-zA-Z],\s+)?--(?:\[no-\])?([a-z][a-z0-9-]*)(?:[= ]([A-Z][A-Za-z0-9|:._/[\]-]*|[a-z0-9-]+(?:\|[a-z0-9-]+)+))?\s{2,}(.*)$/.exec(
      line,
    );
    if (match && !flags[match[1]]) flags[match[1]] = { placeholder: match[2], text: match[3].trim() };
  }
  return flags;
}

/**
 * A tool's completion model from its dumped spec and help: flags (each with its names, whether
 * it takes a value, what that value may be, whether it repeats, its description) and positional
 * arguments (kind, repeat, stopEarly: words after the first positional belong to a command).
 */
export function toolModel({ name, spec, common, help }) {
  const strings = new Set([...common.string, ...(spec.string ?? []), ...(spec.multiple ?? [])]);
  const booleans = [...common.boolean, ...(spec.boolean ?? [])];
  const alias = { ...common.alias, ...(spec.alias ?? {}) };
  const described = helpFlagLines(help);
  const shortOf = (long) =>
    Object.entries(alias)
      .filter(([key, target]) => target === long && key.length === 1)
      .map(([key]) => `-${key}`);
  const flags = [];
  for (const long of [...strings].sort()) {
    const placeholder = described[long]?.placeholder;
    const values = FLAG_VALUES[long] ?? (placeholder && /^[a-z0-9-]+(\|[a-z0-9-]+)+$/.test(placeholder) ? placeholder.split('|') : undefined);
    flags.push({
      names: [...shortOf(long), `--${long}`],
      value: values ?? (CONTAINER_PATHS.has(long) ? undefined : PLACEHOLDER_KINDS[placeholder]) ?? '@any',
      multiple: Boolean(spec.multiple?.includes(long)),
      text: described[long]?.text ?? '',
    });
  }
  for (const long of [...new Set(booleans)].sort()) {
    // A boolean that defaults to on is turned off with --no-NAME, the only spelling worth offering.
    const on = spec.default?.[long] === true;
    flags.push({
      names: on ? [`--no-${long}`] : [...shortOf(long), `--${long}`],
      value: null,
      multiple: false,
      text: described[on ? `no-${long}` : long]?.text ?? described[long]?.text ?? '',
    });
  }
  const usage = /Usage:\s*\S+\s+(.*)/.exec(help)?.[1] ?? '';
  const positional = /(?:^|\s)\[?([A-Z]+)(\.\.\.)?/.exec(usage.replace(/\[OPTIONS\]/g, ''));
  return {
    name,
    flags,
    positional: positional ? (POSITIONAL_KINDS[positional[1]] ?? null) : null,
    repeat: Boolean(positional?.[2]),
    stopEarly: Boolean(spec.stopEarly),
  };
}

const shellWords = (words) => words.join(' ');

/** The bash completion script for all tools: one function, one `complete` line. */
export function bashScript(models) {
  const specCases = models.map((m) => {
    const all = m.flags.flatMap((f) => f.names);
    const valued = m.flags.filter((f) => f.value !== null).flatMap((f) => f.names);
    return [
      `    ${m.name})`,
      `      flags='${shellWords(all)}'`,
      `      valued='${shellWords(valued)}'`,
      `      positional='${m.positional ?? ''}' repeat=${m.repeat ? 1 : 0} stop_early=${m.stopEarly ? 1 : 0} ;;`,
    ].join('\n');
  });
  const valueCases = [];
  for (const m of models) {
    for (const f of m.flags) {
      if (f.value === null || f.value === '@any') continue;
      valueCases.push(`    ${f.names.map((n) => `${m.name}:${n}`).join('|')}) values='${Array.isArray(f.value) ? shellWords(f.value) : f.value}' ;;`);
    }
  }
  return `# bash completion for conveyor's tools. Generated by scripts/build/gen-completion.mjs from each
# tool's flag specification: do not edit, regenerate (make completion).

# The flags of a tool, those that take a value, and what its positional arguments are.
_conveyor_spec() {
  case $1 in
${specCases.join('\n')}
    *) flags='' valued='' positional='' repeat=0 stop_early=0 ;;
  esac
}

# The words a flag's value may be, or @file, @dir, @signal.
_conveyor_values() {
  values=''
  case "$1:$2" in
${valueCases.join('\n')}
  esac
}

# Adds the lines of stdin that start with the word being completed (never evaluated as shell words:
# names and references come from the store).
_conveyor_add_matching() {
  local word
  while IFS= read -r word; do
    [[ -n $word && $word == "$1"* ]] && COMPREPLY+=("$word")
  done
}

# Container names and short ids, from ctr-ls (in the store of --root when the command line has one).
_conveyor_containers() {
  ctr-ls -a --json "\${root[@]}" 2>/dev/null |
    sed -n 's/^{"type":"container","v":[0-9]*,"id":"\\([0-9a-f]\\{12\\}\\)[0-9a-f]*"\\(,"name":"\\([^"]*\\)"\\)\\{0,1\\}.*/\\1\\n\\3/p'
}

# Volume names, from vol-ls.
_conveyor_volumes() {
  vol-ls -q "\${root[@]}" 2>/dev/null
}

# Image references in the store, and their short forms (busybox:latest for docker.io/library/busybox:latest).
_conveyor_images() {
  img-ls --json "\${root[@]}" 2>/dev/null | sed -n -e 's/^{"type":"image","v":[0-9]*,"ref":"\\([^"]*\\)".*/\\1/p' |
    sed -e 'p' -e 's#^docker\\.io/library/##;t' -e 's#^docker\\.io/##'
}

_conveyor() {
  local tool=\${1##*/} flags valued positional repeat stop_early values
  _conveyor_spec "$tool"
  COMPREPLY=()
  # bash splits words at : and = (COMP_WORDBREAKS): join the pieces of the word being completed,
  # and keep in mind the part before the last piece, which the replies must not repeat.
  local i=$COMP_CWORD cur=\${COMP_WORDS[COMP_CWORD]}
  while ((i > 1)) && [[ \${COMP_WORDS[i]} =~ ^[:=]+$ || \${COMP_WORDS[i - 1]} =~ ^[:=]+$ ]]; do
    i=$((i - 1))
    cur=\${COMP_WORDS[i]}$cur
  done
  local piece=\${COMP_WORDS[COMP_CWORD]}
  [[ $piece =~ ^[:=]+$ ]] && piece=''
  local before=\${cur%"$piece"} prev=\${COMP_WORDS[i - 1]}
  # Count the positional words before this one; note --root for ctr-ls and img-ls.
  local j=1 n=0 after_dash=0 word root=()
  while ((j < i)); do
    word=\${COMP_WORDS[j]}
    if [[ $word =~ ^[:=]+$ ]]; then
      j=$((j + 2))
      continue
    fi
    if ((after_dash)); then
      n=$((n + 1))
    elif [[ $word == -- ]]; then
      after_dash=1
    elif [[ $word == -* && $word != - ]]; then
      if [[ " $valued " == *" $word "* && \${COMP_WORDS[j + 1]} != = ]]; then
        [[ $word == --root ]] && root=(--root "\${COMP_WORDS[j + 1]}")
        j=$((j + 1))
      fi
    else
      n=$((n + 1))
    fi
    j=$((j + 1))
  done
  if ((after_dash)) || ((stop_early && n > 0)); then
    return 0
  fi
  local flag='' prefix=''
  if [[ $cur == --*=* ]]; then
    flag=\${cur%%=*} prefix="$flag="
  elif [[ " $valued " == *" $prev "* ]] && ((i > 1)); then
    flag=$prev
  fi
  if [[ -n $flag ]]; then
    _conveyor_values "$tool" "$flag"
    local value=\${cur#"$prefix"}
    case $values in
      @file) compopt -o filenames 2>/dev/null; while IFS= read -r word; do COMPREPLY+=("$prefix$word"); done < <(compgen -f -- "$value") ;;
      @dir) compopt -o filenames 2>/dev/null; while IFS= read -r word; do COMPREPLY+=("$prefix$word"); done < <(compgen -d -- "$value") ;;
      @signal) _conveyor_add_matching "$value" < <(compgen -A signal | sed 's/^SIG//'; [[ $value == SI* ]] && compgen -A signal) ;;
      *) for word in $values; do [[ $word == "$value"* ]] && COMPREPLY+=("$word"); done ;;
    esac
    [[ $values != @* && -n $prefix ]] && COMPREPLY=("\${COMPREPLY[@]/#/$prefix}")
  elif [[ $cur == -* ]]; then
    for word in $flags; do [[ $word == "$cur"* ]] && COMPREPLY+=("$word"); done
  elif ((repeat || n == 0)); then
    case $positional in
      container) _conveyor_add_matching "$cur" < <(_conveyor_containers) ;;
      image) _conveyor_add_matching "$cur" < <(_conveyor_images) ;;
      volume) _conveyor_add_matching "$cur" < <(_conveyor_volumes) ;;
      file) compopt -o filenames 2>/dev/null; _conveyor_add_matching "$cur" < <(compgen -f -- "$cur") ;;
    esac
  fi
  # Give back only what follows the last : or = piece bash will replace.
  if [[ -n $before ]]; then
    COMPREPLY=("\${COMPREPLY[@]#"$before"}")
  fi
  return 0
}

complete -F _conveyor ${models.map((m) => m.name).join(' ')}
`;
}

/** Escapes a description for an _arguments spec inside single quotes. */
const zshText = (text) =>
  text
    .replace(/\\/g, '\\\\')
    .replace(/'/g, "'\\''")
    .replace(/([[\]:])/g, '\\$1');

/** The zsh completion function for all tools (`#compdef`, for a directory on $fpath). */
export function zshScript(models) {
  const cases = models.map((m) => {
    const specs = m.flags.map((f) => {
      const exclusive = f.names.length > 1 && !f.multiple ? `(${f.names.join(' ')})` : '';
      const star = f.multiple ? '*' : '';
      const names = f.names.length > 1 ? `{${f.names.join(',')}}` : f.names[0];
      const long = f.names.at(-1);
      let action = '';
      if (f.value !== null) {
        const what = Array.isArray(f.value)
          ? `(${f.value.join(' ')})`
          : { '@file': '_files', '@dir': '_files -/', '@signal': '_signals', '@any': ' ' }[f.value];
        action = `:${long.replace(/^--/, '')}:${what}`;
      }
      const eq = f.value !== null && long.startsWith('--') ? '=' : '';
      // {-j,--jobs} is brace-expanded by zsh into one spec per name, each with the `=` and the rest.
      const namesEq = f.names.length > 1 ? `{${f.names.map((n) => (n.startsWith('--') ? `${n}${eq}` : n)).join(',')}}` : `${names}${eq}`;
      return `'${star}${exclusive}'${namesEq}'[${zshText(f.text)}]${action}'`;
    });
    const what = { container: '_conveyor_containers', image: '_conveyor_images', volume: '_conveyor_volumes', file: '_files' }[m.positional];
    if (what) specs.push(`'${m.repeat ? '*' : '1'}:${m.positional}:${what}'`);
    if (m.stopEarly) specs.push("'*::command:_normal'");
    return `    ${m.name})\n      _arguments -s -S \\\n        ${specs.join(' \\\n        ')}\n      ;;`;
  });
  return `#compdef ${models.map((m) => m.name).join(' ')}
# zsh completion for conveyor's tools. Generated by scripts/build/gen-completion.mjs from each
# tool's flag specification: do not edit, regenerate (make completion).

_conveyor_containers() {
  local -a words
  words=(\${(f)"$(ctr-ls -a --json 2>/dev/null | sed -n 's/^{"type":"container","v":[0-9]*,"id":"\\([0-9a-f]\\{12\\}\\)[0-9a-f]*"\\(,"name":"\\([^"]*\\)"\\)\\{0,1\\}.*/\\1\\n\\3/p')"})
  compadd -Q -a words
}

_conveyor_volumes() {
  local -a words
  words=(\${(f)"$(vol-ls -q 2>/dev/null)"})
  compadd -Q -a words
}

_conveyor_images() {
  local -a words
  words=(\${(f)"$(img-ls --json 2>/dev/null | sed -n -e 's/^{"type":"image","v":[0-9]*,"ref":"\\([^"]*\\)".*/\\1/p' | sed -e 'p' -e 's#^docker\\.io/library/##;t' -e 's#^docker\\.io/##')"})
  compadd -Q -a words
}

_conveyor() {
  case $service in
${cases.join('\n')}
  esac
}

_conveyor "$@"
`;
}

/**
 * Runs every built tool with CONVEYOR_DUMP_FLAGS=1 and returns what each printed ({name, spec,
 * common, help}), in name order. A tool
 * not built yet (no dist/cli.js), or one that does not answer with its flags (a scaffold that does
 * not call runCli yet), is left out with a warning, so that one unfinished tool does not stop
 * `make install`; test/help.test.ts checks that every tool is in.
 */
export async function dumpFlags(repo = REPO, warn = (message) => process.stderr.write(`gen-completion: ${message}\n`)) {
  const run = promisify(execFile);
  const tools = readdirSync(join(repo, 'tools'))
    .sort()
    .filter((tool) => existsSync(join(repo, 'tools', tool, 'dist', 'cli.js')) || warn(`${tool} is not built: left out`));
  const dumps = await Promise.all(
    tools.map(async (tool) => {
      const bin = join(repo, 'tools', tool, 'bin', `${tool}.js`);
      try {
        const { stdout } = await run(process.execPath, [bin], { env: { ...process.env, CONVEYOR_DUMP_FLAGS: '1' } });
        return JSON.parse(stdout);
      } catch (error) {
        warn(`${tool} did not print its flags, left out: ${error.message.split('\n')[0]}`);
        return undefined;
      }
    }),
  );
  return dumps.filter((dump) => dump !== undefined);
}

/** Writes OUT/conveyor.bash and OUT/_conveyor (from `dumps`, else from dumpFlags); returns their paths. */
export async function generateCompletion(out, { repo = REPO, dumps } = {}) {
  const models = (dumps ?? (await dumpFlags(repo))).map(toolModel);
  mkdirSync(out, { recursive: true });
  const bash = join(out, 'conveyor.bash');
  const zsh = join(out, '_conveyor');
  writeFileSync(bash, bashScript(models));
  writeFileSync(zsh, zshScript(models));
  return [bash, zsh];
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const written = await generateCompletion(resolve(process.argv[2] ?? join(REPO, 'completion')));
    process.stdout.write(`gen-completion: ${written.join(', ')}\n`);
  } catch (error) {
    process.stderr.write(`gen-completion: ${error.message}\n`);
    process.exitCode = 1;
  }
}
