/**
 * One parsed instruction → a typed Step, as buildkit's instructions/parse.go
 * and the expansion its dispatcher does: flags checked against the ones each
 * instruction takes, argument counts, JSON or shell form, and variables
 * substituted in the instructions Docker substitutes in (ADD ARG COPY ENV
 * EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR; RUN, CMD and ENTRYPOINT are
 * the shell's). Every error is ERR_DOCKERFILE_PARSE naming the line.
 */
import { isConveyorError } from '@conveyor/lib-common/errors';
import { type ExpandOptions, expandWord, expandWords } from './expand.js';
import { checkFlags, StepError } from './flags.js';
import { resolveHealthcheck } from './healthcheck.js';
import { parseError, quoted, shown } from './messages.js';
import { parseHeredocWord } from './parse.js';
import { parseFromArgs } from './stages.js';
import type { Heredoc, Instruction, Lookup, Step } from './steps.js';

const RUN_NETWORKS = new Set(['default', 'none', 'host']);
/**
 * Resolves one instruction with the variables in scope (`lookup`: ARGs and ENVs
 * the builder holds; global ARGs for FROM) and the Dockerfile's escape character.
 */
export function resolveStep(instruction: Instruction, lookup: Lookup, escapeChar: '\\' | '`'): Step {
  try {
    return resolve(instruction, lookup, escapeChar);
  } catch (error) {
    const file = instruction.file ?? 'Dockerfile';
    if (error instanceof StepError) throw parseError(file, instruction.line, error.message, error.hint);
    if (isConveyorError(error) && error.code === 'ERR_DOCKERFILE_PARSE' && !error.message.startsWith(`${file}:`)) {
      throw parseError(file, instruction.line, error.message, error.hint);
    }
    throw error;
  }
}

function resolve(instruction: Instruction, lookup: Lookup, escapeChar: '\\' | '`'): Step {
  const { keyword, rest } = instruction;
  const base = { line: instruction.line, original: instruction.original };
  const word = (text: string, options?: ExpandOptions) => expandWord(text, lookup, escapeChar, options);
  const flagsOf = () => checkFlags(instruction);

  switch (keyword) {
    case 'FROM': {
      const flags = flagsOf();
      const parsed = parseFromArgs(rest);
      if ('error' in parsed) throw new StepError(parsed.error);
      const image = word(parsed.image);
      if (image === '') throw new StepError(`base name (${shown(parsed.image)}) should not be blank`, 'set the ARG it uses, or give it a default');
      const step: Step = { ...base, kind: 'FROM', image };
      if (parsed.name !== undefined) step.name = parsed.name;
      const platform = flags.platform === undefined ? '' : word(flags.platform);
      if (platform !== '') step.platform = platform;
      return step;
    }
    case 'RUN': {
      const flags = flagsOf();
      const network = flags.network;
      if (network !== undefined && !RUN_NETWORKS.has(network)) {
        throw new StepError(`unsupported network mode ${quoted(network)}`, 'RUN --network takes default, none or host');
      }
      if (instruction.json === undefined ? rest.trim() === '' : instruction.json.length === 0) {
        throw new StepError('RUN requires at least one argument');
      }
      const step: Step = { ...base, kind: 'RUN', heredocs: instruction.heredocs };
      if (instruction.json !== undefined) step.exec = instruction.json;
      else step.script = rest;
      if (network !== undefined) step.network = network as 'default' | 'none' | 'host';
      return step;
    }
    case 'CMD':
    case 'ENTRYPOINT': {
      flagsOf();
      // An empty shell form clears the setting, as an empty JSON array does.
      if (instruction.json !== undefined || rest.trim() === '') return { ...base, kind: keyword, exec: instruction.json ?? [] };
      return { ...base, kind: keyword, script: rest };
    }
    case 'SHELL': {
      flagsOf();
      if (instruction.json === undefined) {
        if (rest.trim() === '') throw new StepError('SHELL requires at least one argument');
        throw new StepError('SHELL requires the arguments to be in JSON form', `write it as SHELL ${shown(JSON.stringify(rest.trim().split(/\s+/)))}`);
      }
      if (instruction.json.length === 0) throw new StepError('SHELL requires at least one argument');
      return { ...base, kind: 'SHELL', shell: instruction.json };
    }
    case 'COPY':
    case 'ADD':
      return resolveCopy(instruction, lookup, escapeChar);
    case 'ENV':
    case 'LABEL': {
      flagsOf();
      const pairs = nameValuePairs(rest, keyword, escapeChar).map(([key, value]): [string, string] => {
        const name = word(key);
        if (name === '') throw new StepError(`${keyword} names can not be blank`);
        const expanded = word(value);
        // An environment entry cannot hold a NUL (execve ends the string there); a label could, but no one means it.
        if (name.includes('\0') || expanded.includes('\0')) throw new StepError(`${keyword} ${quoted(name)}: a NUL character is not allowed`);
        return [name, expanded];
      });
      return keyword === 'ENV' ? { ...base, kind: 'ENV', pairs } : { ...base, kind: 'LABEL', pairs };
    }
    case 'ARG': {
      flagsOf();
      const words = splitQuotedWords(rest, escapeChar);
      if (words.length === 0) throw new StepError('ARG requires at least one argument');
      const args = words.map((text) => {
        const eq = text.indexOf('=');
        const name = eq < 0 ? text : text.slice(0, eq);
        if (name === '') throw new StepError('ARG names can not be blank');
        // Docker takes any name; only a NUL, which no environment can hold, is refused.
        if (name.includes('\0')) throw new StepError(`invalid ARG name ${quoted(name)}`, 'a name cannot hold a NUL character');
        return eq < 0 ? { name } : { name, default: word(text.slice(eq + 1)) };
      });
      return { ...base, kind: 'ARG', args };
    }
    case 'WORKDIR':
    case 'USER':
    case 'STOPSIGNAL': {
      flagsOf();
      if (rest.trim() === '') throw new StepError(`${keyword} requires exactly one argument`);
      const value = word(rest.trim());
      if (keyword === 'WORKDIR') {
        if (value === '') throw new StepError('WORKDIR cannot be empty');
        return { ...base, kind: 'WORKDIR', path: value };
      }
      // An empty USER (a variable that expands to nothing) is the default user, as Docker sets it.
      if (keyword === 'USER') return { ...base, kind: 'USER', user: value };
      if (!/^(SIG)?[A-Z0-9+-]+$|^[0-9]+$/i.test(value))
        throw new StepError(`invalid STOPSIGNAL ${quoted(value)}`, 'give a signal name (SIGTERM) or number (15)');
      return { ...base, kind: 'STOPSIGNAL', signal: value };
    }
    case 'EXPOSE': {
      flagsOf();
      if (rest.trim() === '') throw new StepError('EXPOSE requires at least one argument');
      // A variable that expands to nothing exposes nothing (Docker builds `ARG PORT` + `EXPOSE $PORT`).
      const ports = expandWords(rest, lookup, escapeChar);
      for (const port of ports) {
        // Docker's nat.ParsePortSpec: 16-bit numbers, a range low to high, tcp/udp/sctp in any case.
        const match = /^(\d{1,5})(?:-(\d{1,5}))?(?:\/(tcp|udp|sctp))?$/i.exec(port);
        const low = Number(match?.[1]);
        const high = match?.[2] === undefined ? low : Number(match[2]);
        if (!match || high > 65535 || low > high) {
          throw new StepError(`invalid port ${quoted(port)}`, 'EXPOSE takes PORT[/tcp|udp|sctp] or LOW-HIGH ranges of ports 0-65535');
        }
      }
      return { ...base, kind: 'EXPOSE', ports };
    }
    case 'VOLUME': {
      flagsOf();
      const raw = instruction.json ?? splitQuotedWords(rest, escapeChar);
      if (raw.length === 0) throw new StepError('VOLUME requires at least one argument');
      const paths = raw.map((text) => {
        const path = word(text).trim();
        if (path === '') throw new StepError('VOLUME specified can not be an empty string');
        return path;
      });
      return { ...base, kind: 'VOLUME', paths };
    }
    case 'HEALTHCHECK':
      return resolveHealthcheck(instruction);
    case 'ONBUILD': {
      flagsOf();
      const trigger = rest.trim().split(/\s+/)[0]?.toUpperCase() ?? '';
      if (trigger === '') throw new StepError('ONBUILD requires at least one argument');
      if (trigger === 'ONBUILD') throw new StepError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
      if (trigger === 'MAINTAINER' || trigger === 'FROM') throw new StepError(`${trigger} isn't allowed as an ONBUILD trigger`);
      let expression = rest.trim();
      for (const heredoc of instruction.heredocs) expression += `\n${heredoc.content}${heredoc.name}`;
      return { ...base, kind: 'ONBUILD', instruction: expression };
    }
    case 'MAINTAINER': {
      flagsOf();
      if (rest.trim() === '') throw new StepError('MAINTAINER requires exactly one argument');
      return { ...base, kind: 'MAINTAINER', author: rest.trim() };
    }
    default:
      throw new StepError(`unknown instruction: ${keyword}`);
  }
}

/**
 * Words split at unquoted whitespace with their quotes and escapes kept, for
 * expanding one by one afterwards (buildkit's parseWords): `COPY "a b" c /d`
 * has three words, and a variable holding spaces stays one source.
 */
function splitQuotedWords(text: string, escapeChar: '\\' | '`'): string[] {
  const words: string[] = [];
  const chars = Array.from(text);
  let word = '';
  let quote = '';
  let inWord = false;
  let blankOK = false;
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i];
    if (quote) {
      if (ch === quote) quote = '';
      else if (ch === escapeChar && quote !== "'" && i + 1 < chars.length) {
        word += ch;
        i++;
        word += chars[i];
        continue;
      }
      word += ch;
      continue;
    }
    if (/\s/u.test(ch)) {
      if (inWord && (blankOK || word.length > 0)) words.push(word);
      word = '';
      inWord = false;
      blankOK = false;
      continue;
    }
    inWord = true;
    if (ch === "'" || ch === '"') {
      quote = ch;
      blankOK = true;
    } else if (ch === escapeChar) {
      if (i + 1 === chars.length) continue;
      word += ch;
      i++;
      word += chars[i];
      continue;
    }
    word += ch;
  }
  if (inWord && (blankOK || word.length > 0)) words.push(word);
  return words;
}

/**
 * ENV/LABEL arguments as [key, value] pairs, both still unexpanded (buildkit's
 * parseNameVal): `KEY=value …` pairs, or the old `KEY value with spaces` form
 * when the first word has no `=`.
 */
function nameValuePairs(rest: string, keyword: string, escapeChar: '\\' | '`'): [string, string][] {
  const words = splitQuotedWords(rest, escapeChar);
  if (words.length === 0) throw new StepError(`${keyword} requires at least one argument`);
  if (!words[0].includes('=')) {
    const match = /^(\S+)[\t\v\f\r ]+(.*)$/s.exec(rest.trim());
    if (!match) throw new StepError(`${keyword} must have two arguments`, `write ${keyword} name=value`);
    return [[match[1], match[2]]];
  }
  return words.map((text): [string, string] => {
    const eq = text.indexOf('=');
    if (eq < 0) throw new StepError(`Syntax error - can't find = in ${quoted(text)}. Must be of the form: name=value`);
    return [text.slice(0, eq), text.slice(eq + 1)];
  });
}

function resolveCopy(instruction: Instruction, lookup: Lookup, escapeChar: '\\' | '`'): Step {
  const keyword = instruction.keyword as 'COPY' | 'ADD';
  const flags = checkFlags(instruction);
  const word = (text: string) => expandWord(text, lookup, escapeChar);
  const args = instruction.json ?? splitQuotedWords(instruction.rest, escapeChar);
  if (args.length < 2) {
    throw new StepError(`${keyword} requires at least two arguments, but only one was provided. Destination could not be determined`);
  }
  const rawDest = args[args.length - 1];
  const isJSON = instruction.json !== undefined;
  if (!isJSON && parseHeredocWord(rawDest)) throw new StepError(`${keyword} cannot accept a heredoc as a destination`);
  const byName = new Map(instruction.heredocs.map((heredoc) => [heredoc.name, heredoc]));
  const sources: string[] = [];
  const heredocs: Heredoc[] = [];
  for (const source of args.slice(0, -1)) {
    const opener = isJSON ? undefined : parseHeredocWord(source);
    if (opener) {
      const body = byName.get(opener.name);
      if (!body) throw new StepError(`heredoc <<${shown(opener.name)} has no body`);
      // Heredoc bodies expand variables but keep quotes (buildkit dispatches them with SkipProcessQuotes).
      const content = body.expand ? expandWord(body.content, lookup, '\\', { processQuotes: false }) : body.content;
      heredocs.push({ name: body.name, content, expand: body.expand });
      continue;
    }
    // The JSON form is expanded too: buildkit expands SourcesAndDest whatever the form.
    sources.push(word(source));
  }
  const dest = word(rawDest);
  if (dest === '') throw new StepError(`${keyword} destination can not be empty`);
  if (sources.some((source) => source === '')) throw new StepError(`${keyword} source can not be empty`);
  const step: Step = { line: instruction.line, original: instruction.original, kind: keyword, sources, dest, heredocs };
  if (flags.from !== undefined) {
    step.from = word(flags.from);
    if (step.from === '') throw new StepError('--from can not be empty');
  }
  // A flag whose value expands to nothing is as if not given (Docker: `--chown=$UNSET` keeps the owners).
  const chown = flags.chown === undefined ? '' : word(flags.chown);
  if (chown !== '') step.chown = chown;
  const chmod = flags.chmod === undefined ? '' : word(flags.chmod);
  if (chmod !== '') {
    if (!/^[0-7]{1,4}$/.test(chmod)) {
      throw new StepError(`invalid --chmod=${shown(chmod)}`, 'give an octal mode such as 755 or 0644 (symbolic modes are not supported)');
    }
    step.chmod = chmod;
  }
  if (flags.link !== undefined) step.link = flags.link === 'true';
  const checksum = flags.checksum === undefined ? '' : word(flags.checksum);
  if (checksum !== '') {
    if (!/^sha(256|384|512):[a-f0-9]+$/.test(checksum)) {
      throw new StepError(`invalid --checksum=${shown(checksum)}`, 'give the digest as sha256:<64 hex>');
    }
    step.checksum = checksum;
  }
  if (flags['keep-git-dir'] !== undefined) step.keepGitDir = flags['keep-git-dir'] === 'true';
  return step;
}
