/**
 * Help: the man pages (scripts/build/gen-man.mjs, from the READMEs) and the bash and zsh
 * completion (scripts/build/gen-completion.mjs, from each tool's flag specification), both
 * generated into a temp dir from the current sources (they are build outputs, not committed, so
 * they cannot be stale), and the agreement of each tool's --help with its README's options.
 * groff renders every page with all warnings on (-ww): a warning fails. Completion is checked by
 * calling the bash function as bash does (COMP_WORDS, COMP_CWORD), on a store with the busybox
 * image and one stopped container; zsh is checked when it is installed.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { removeDetached, startDetached } from './helpers/containers.js';
import { REPO_ROOT } from './helpers/fixtures.js';
import { busyboxRootfs, removeStore, tempStore } from './helpers/rootfs.js';
import { runTool, toolPath } from './helpers/tools.js';
// The build scripts are plain ES modules (no type declarations: tap runs tests untyped).
import { escapeRoff, firstSentence, inlineRoff, markdownToMan, parseBlocks, tableCells } from '../scripts/build/markdown-roff.mjs';
import { generateManPages, manSources, topLevelParts } from '../scripts/build/gen-man.mjs';
import { dumpFlags, generateCompletion, helpFlagLines, toolModel } from '../scripts/build/gen-completion.mjs';

const TOOLS = readdirSync(join(REPO_ROOT, 'tools')).sort();
const out = mkdtempSync(join(tmpdir(), 'conveyor-help-'));
t.teardown(() => rmSync(out, { recursive: true, force: true }));

/** The options of a --help text: one entry per option line, with its spellings (`-q`, `--quiet`). */
function helpOptions(help: string): string[][] {
  const options: string[][] = [];
  for (const line of help.split('\n')) {
    const match = /^\s+((?:-[a-zA-Z],\s+)?--[a-z][a-z0-9-]*)/.exec(line);
    if (match) options.push(match[1].split(/,\s+/));
  }
  return options;
}

/** Whether `text` names the option `spelling` as a word of its own (`--tty` is not in `--ttyx`). */
const mentions = (text: string, spelling: string) => new RegExp(`(^|[^\\w-])${spelling}(?![\\w-])`).test(text);

/** The `## Options` section of a README. */
const optionsSection = (readme: string) => /^## Options\n([\s\S]*?)(?=^## |(?![\s\S]))/m.exec(readme)?.[1] ?? '';

// Each tool's help text as runCli prints it for --help, read with the flag specification
// (CONVEYOR_DUMP_FLAGS) that the completion is generated from: one start of each tool for both.
const helps = new Map<string, string>();
let dumps: { name: string; help: string }[] = [];
t.before(async () => {
  dumps = await dumpFlags(REPO_ROOT, () => {});
  for (const dump of dumps) helps.set(dump.name, dump.help.endsWith('\n') ? dump.help : `${dump.help}\n`);
});

t.test('the dumped help is what --help prints', async (t) => {
  t.equal(helps.get('img-fetch'), (await runTool('img-fetch', ['--help'])).stdout);
  t.strictSame(
    TOOLS.filter((tool) => !helps.has(tool)),
    [],
    'every tool prints its flags under CONVEYOR_DUMP_FLAGS=1',
  );
});

t.test('roff escaping and inline Markdown', async (t) => {
  const cases: [string, string, string][] = [
    ['hyphens become \\-', '--root DIR', '\\-\\-root DIR'],
    ['a backslash is \\e', 'a\\b', 'a\\eb'],
    ['non-ASCII is a \\[u] escape', 'caf\u00e9 \u2026', 'caf\\[u00E9] \\[u2026]'],
  ];
  for (const [what, input, expected] of cases) t.equal(escapeRoff(input), expected, what);
  const inline: [string, string, string][] = [
    ['code is bold', 'run `img-ls -q` now', 'run \\fBimg\\-ls \\-q\\fR now'],
    ['bold', '**Resume.** Downloads', '\\fBResume.\\fR Downloads'],
    ['italics', 'an *idle* timer', 'an \\fIidle\\fR timer'],
    ['snake_case is not italics', 'a_b_c', 'a_b_c'],
    ['a relative link is its text', 'see [the README](../README.md)', 'see the README'],
    ['a web link keeps its address', '[spec](https://x.io/s)', 'spec <https://x.io/s>'],
    ['an escaped pipe is a pipe', 'text\\|json', 'text|json'],
    ['a backslash in code stays', '`a\\|b`', '\\fBa\\e|b\\fR'],
    ['roff in the text stays text', 'say \\fBhi', 'say \\efBhi'],
    ['bold code', '**`--privileged`**: all', '\\fB\\fB\\-\\-privileged\\fR\\fR: all'],
    ['a code span holding a backslash', 'carry `\\` or `:`', 'carry \\fB\\e\\fR or \\fB:\\fR'],
    ['double backticks around a backtick', '``a`b``', '\\fBa`b\\fR'],
    ['an unclosed backtick is text', 'a ` b', 'a ` b'],
  ];
  for (const [what, input, expected] of inline) t.equal(inlineRoff(input), expected, what);
});

t.test('Markdown blocks', async (t) => {
  const cells: [string, string[]][] = [
    ['| a | b |', ['a', 'b']],
    ['| `--pull always\\|never` | policy |', ['`--pull always|never`', 'policy']],
    ['|x||', ['x', '']],
  ];
  for (const [row, expected] of cells) t.strictSame(tableCells(row), expected, row);
  const sentences: [string, string][] = [
    ['Pull images from a registry. Then more.', 'Pull images from a registry'],
    ['List the store, e.g. `img-ls`.', 'List the store, e.g. img-ls'],
    ['No full stop', 'No full stop'],
  ];
  for (const [text, expected] of sentences) t.equal(firstSentence(text), expected, text);
  const kinds = parseBlocks('# T\n\nPara\nline\n\n    code\n\n- item\n  more\n\n  second para\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```\nfenced\n```\n').map(
    (b: { kind: string }) => b.kind,
  );
  t.strictSame(kinds, ['heading', 'para', 'code', 'item', 'item', 'table', 'code']);
});

t.test('a hostile README cannot inject roff requests', async (t) => {
  const page = markdownToMan("# evil\n\nDoes things.\n\n.so /etc/shadow\n\n    .sh evil\n\n- 'br\n", { name: 'evil' });
  t.match(page, /^\\&\.so \/etc\/shadow$/m, 'a paragraph line starting with . is text');
  t.match(page, /^\\&\.sh evil$/m, 'a code line starting with . is text');
  t.match(page, /^\\&'br$/m, "a line starting with ' is text");
  t.notMatch(page, /^\.(so|sh) /m);
  t.equal(spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z'], { input: page, encoding: 'utf8' }).stderr, '', 'groff has no warning');
});

t.test('SEE ALSO names man pages', async (t) => {
  const page = markdownToMan('# x\n\nX.\n\n## See also\n\n[ctr-ls](../ctr-ls/README.md), runc-exec(8), [protocol](../../docs/protocol.md)\n', { name: 'x' });
  t.match(page, /^\\fBctr\\-ls\\fR\(1\), \\fBrunc\\-exec\\fR\(8\), protocol$/m);
});

t.test('the scripts README is split at its level-1 headings', async (t) => {
  const parts = topLevelParts('# conveyor-run\n\nRuns.\n\n```\n# not a heading\n```\n# conveyor-promote\n\nPromotes.\n');
  t.strictSame(
    parts.map((p: { title: string }) => p.title),
    ['conveyor-run', 'conveyor-promote'],
  );
  t.match(parts[0].text, /# not a heading/);
});

t.test('man pages', async (t) => {
  const written: string[] = generateManPages(out);
  const pages = new Map(written.map((path) => [path.split('/').at(-1)!.replace(/\.1$/, ''), path]));
  t.equal(pages.size, manSources().length, 'a page per README');
  const texts = new Map<string, string>();
  // Every page, the scripts' (conveyor-run, ...) included: no groff warning, a NAME line.
  for (const [name, path] of pages) {
    const render = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-rLL=300n', '-rHY=0', '-P-cbou', path], { encoding: 'utf8' });
    t.equal(render.stderr, '', `${name}.1: groff -ww has no warning`);
    // No hyphenation nor typographic minus signs, so options read as they are typed.
    const text = render.stdout.replace(/[\u2010\u2212]/g, '-');
    t.match(text, new RegExp(`NAME\\n\\s+${name}\\s+-\\s+\\S`), `${name}.1 has a NAME line`);
    texts.set(name, text);
  }
  for (const tool of TOOLS) {
    const text = texts.get(tool);
    if (!t.ok(text, `${tool} has a man page`)) continue;
    for (const spellings of helpOptions(helps.get(tool) ?? '')) {
      t.ok(
        spellings.some((s) => mentions(text!, s)),
        `${tool}.1 shows ${spellings.join(', ')}`,
      );
    }
  }
  // man(1) itself reads the pages: what `man img-fetch` shows after make install.
  const man = spawnSync('man', ['-l', pages.get('img-fetch')!], { encoding: 'utf8', env: { ...process.env, MANPAGER: 'cat', PAGER: 'cat', MANWIDTH: '100' } });
  t.equal(man.status, 0, 'man -l reads img-fetch.1');
  t.match(man.stdout, /img-fetch/);
});

t.test('every option of --help is in the README options section', async (t) => {
  for (const tool of TOOLS) {
    const readme = join(REPO_ROOT, 'tools', tool, 'README.md');
    if (!t.ok(existsSync(readme), `${tool} has a README`)) continue;
    const section = optionsSection(readFileSync(readme, 'utf8'));
    t.ok(section.length > 0, `${tool}'s README has an Options section`);
    for (const spellings of helpOptions(helps.get(tool) ?? '')) {
      t.ok(
        spellings.some((s) => mentions(section, s)),
        `${tool} README options name ${spellings.join(', ')}`,
      );
    }
  }
});

t.test('the completion model of a flag specification', async (t) => {
  t.strictSame(
    helpFlagLines('Options:\n  -j, --jobs N             parallel downloads\n      --root DIR           store root\n      --json               NDJSON\n'),
    {
      jobs: { placeholder: 'N', text: 'parallel downloads' },
      root: { placeholder: 'DIR', text: 'store root' },
      json: { placeholder: undefined, text: 'NDJSON' },
    },
  );
  const model = toolModel({
    name: 'ctr-demo',
    spec: { string: ['signal', 'mode'], boolean: ['trunc'], multiple: ['env'], alias: { s: 'signal' }, default: { trunc: true } },
    common: { string: ['log-format', 'root'], boolean: ['help'], alias: { h: 'help' } },
    help: 'Usage: ctr-demo [OPTIONS] CONTAINER...\n\n  -s, --signal SIGNAL   send it\n      --mode fast|slow     how\n      --root DIR   where\n',
  });
  const byName = Object.fromEntries(model.flags.map((f: { names: string[] }) => [f.names.at(-1), f]));
  t.strictSame(byName['--signal'].names, ['-s', '--signal']);
  t.equal(byName['--signal'].value, '@signal');
  t.strictSame(byName['--mode'].value, ['fast', 'slow'], 'choices from a a|b placeholder');
  t.strictSame(byName['--log-format'].value, ['text', 'json']);
  t.equal(byName['--root'].value, '@dir');
  t.equal(byName['--env'].multiple, true);
  t.ok(byName['--no-trunc'], 'a boolean that defaults to on is offered as --no-NAME');
  t.notOk(byName['--trunc']);
  t.equal(byName['--help'].value, null);
  t.equal(model.positional, 'container');
  t.equal(model.repeat, true);
});

t.test('bash completion', async (t) => {
  const [bashFile, zshFile] = await generateCompletion(join(out, 'completion'), { dumps });
  const script = readFileSync(bashFile, 'utf8');
  const completed = /^complete -F _conveyor (.*)$/m.exec(script)?.[1].split(' ') ?? [];
  t.strictSame(completed, TOOLS, 'one complete line for every tool');

  // The tools on PATH as `make install` links them, over a store with busybox and a stopped container.
  const bin = join(out, 'bin');
  mkdirSync(bin);
  for (const tool of TOOLS) symlinkSync(toolPath(tool), join(bin, tool));
  const root = tempStore('conveyor-help-');
  t.teardown(() => removeStore(root));
  const rootfs = busyboxRootfs(root);
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, CONVEYOR_ROOT: root };

  /** COMPREPLY for the words as bash splits them (at spaces, `:` and `=`), the last one being completed. */
  const complete = (...words: string[]): string[] => {
    const run = spawnSync(
      'bash',
      [
        '--norc',
        '-c',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a bash script, ${...} is bash's
        'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _conveyor "$1"; printf "%s\\n" "${COMPREPLY[@]}"',
        'bash',
        bashFile,
        ...words,
      ],
      { encoding: 'utf8', env },
    );
    if (run.status !== 0) throw new Error(`bash: ${run.stderr}`);
    return run.stdout.split('\n').filter(Boolean).sort();
  };

  const cases: [string[], string[]][] = [
    [['img-fetch', '--pu'], ['--pull']],
    [
      ['img-fetch', '--pull', ''],
      ['always', 'missing', 'never'],
    ],
    [['img-fetch', '--pull', 'm'], ['missing']],
    [
      ['img-fetch', '--log-format', '=', ''],
      ['json', 'text'],
    ],
    [['img-fetch', '--log-format', '=', 'j'], ['json']],
    [['img-ls', '--log-format', 'j'], ['json']],
    [
      ['ctr-ls', '--progress', ''],
      ['auto', 'bar', 'json', 'none'],
    ],
    [['ctr-ls', '--no'], ['--no-trunc']],
    [['ctr-kill', '-s', 'HU'], ['HUP']],
    [['img-ls', '--js'], ['--json']],
    [
      ['img-fetch', '-'].concat([]),
      helpOptions(helps.get('img-fetch')!)
        .flat()
        .filter((f) => f !== '--layers')
        .sort(),
    ],
    [['ctr-spawn', '--', ''], []],
  ];
  for (const [words, expected] of cases) t.strictSame(complete(...words), expected, words.join(' '));

  t.ok(complete('img-ls', '--root', '/tm').includes('/tmp'), '--root completes directories');
  t.strictSame(complete('img-rm', 'busy'), ['busybox:latest'], 'image references from img-ls, in their short form');
  t.ok(complete('img-rm', 'docker.io/library/b').includes('docker.io/library/busybox:latest'), 'and their full form');
  t.strictSame(complete('img-rm', 'busybox', ':', 'l'), ['latest'], 'after a colon only the rest is given back');

  if (process.getuid?.() !== 0) {
    t.skip('container and volume names: starting a container needs root');
  } else {
    const record = await startDetached(root, rootfs, ['--name', 'help-web', '-v', 'help-data:/data'], ['true']);
    t.teardown(() => removeDetached(root, record.id));
    t.strictSame(complete('ctr-stop', 'help-'), ['help-web'], 'container names from ctr-ls -a');
    t.strictSame(complete('ctr-rm', record.id.slice(0, 4)), [record.id.slice(0, 12)], 'and short ids');
    t.strictSame(complete('ctr-exec', 'help-web', ''), [], "after ctr-exec's container comes its command, not another container");
    t.strictSame(complete('ctr-ls', ''), [], 'ctr-ls takes no positional argument');
    t.strictSame(complete('vol-rm', 'help'), ['help-data'], 'volume names from vol-ls');
  }

  t.test('zsh', async (t) => {
    const zsh = spawnSync('zsh', ['--version']);
    if (zsh.error) return t.skip('zsh is not installed');
    const check = spawnSync('zsh', ['-n', zshFile], { encoding: 'utf8' });
    t.equal(check.stderr, '', 'the zsh function parses');
    const load = spawnSync(
      'zsh',
      ['-f', '-c', `fpath=(${dirname(zshFile)} $fpath); autoload -Uz compinit; compinit -u -D; print -r -- $_comps[img-fetch] $_comps[ctr-stop]`],
      {
        encoding: 'utf8',
      },
    );
    t.equal(load.stdout.trim(), '_conveyor _conveyor', 'compinit maps the tools to _conveyor');

    // Tab pressed in an interactive zsh on a pty (zpty); compadd and the end of the completion are
    // recorded in a file, so nothing depends on reading the screen or on how long a completion takes.
    const capture = join(out, 'capture.zsh');
    writeFileSync(
      capture,
      `zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "fpath=($1 \\$fpath); autoload -Uz compinit; compinit -u -D; unsetopt beep"
zpty -w z "compadd() { builtin compadd \\"\\$@\\"; builtin compadd -O __m \\"\\$@\\"; print -rl -- \\\${__m} >> \${(q)2}; }"
zpty -w z "autoload +X _main_complete; functions -c _main_complete _conveyor_test_main"
zpty -w z "_main_complete() { _conveyor_test_main \\"\\$@\\"; local r=\\$?; print -r -- --done-- >> \${(q)2}; return r; }"
zpty -w z 'print \${:-REA}DY'
local line deadline=$((SECONDS + 120))
while (( SECONDS < deadline )); do
  zpty -r -t z line && [[ $line == *READY* ]] && break
  sleep 0.05
done
zpty -w -n z "$3"$'\\t'
while (( SECONDS < deadline )) && ! grep -qx -- --done-- $2 2>/dev/null; do
  zpty -r -t z line
  sleep 0.05
done
zpty -d z
`,
    );
    const zshComplete = (line: string): string[] => {
      const file = join(out, `zsh-${line.replace(/\W+/g, '_')}.txt`);
      spawnSync('zsh', ['-f', capture, dirname(zshFile), file, line], { env, timeout: 180_000 });
      const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n') : [];
      t.ok(lines.includes('--done--'), `zsh completed ${line}`);
      return [...new Set(lines.filter((l) => l !== '' && l !== '--done--'))].sort();
    };
    const zshCases: [string, string[]][] = [
      ['img-fetch --pul', ['--pull']],
      ['img-fetch --log-format=', ['json', 'text']],
      ['ctr-ls --no', ['--no-trunc']],
      ['ctr-kill -s HU', ['HUP']],
      ['img-rm busy', ['busybox:latest']],
    ];
    for (const [line, expected] of zshCases) t.strictSame(zshComplete(line), expected, `zsh: ${line}`);
  });
});

t.test('make install puts the pages and completion under DESTDIR; uninstall removes them', async (t) => {
  const dest = join(out, 'dest');
  // The tools are built (the suite runs after make build) and the completion generated above is
  // reused (-o: not remade; generating means starting every tool again); `make man` runs.
  t.teardown(() => {
    rmSync(join(REPO_ROOT, 'man'), { recursive: true, force: true });
    rmSync(join(REPO_ROOT, 'completion'), { recursive: true, force: true });
  });
  cpSync(join(out, 'completion'), join(REPO_ROOT, 'completion'), { recursive: true });
  const make = (target: string) =>
    execFileSync('make', ['-s', '-o', 'build', '-o', 'deps', '-o', 'completion', target, `DESTDIR=${dest}`, 'PREFIX=/usr/local'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });
  make('install');
  const share = join(dest, 'usr/local/share');
  for (const tool of TOOLS) {
    t.ok(existsSync(join(share, 'man/man1', `${tool}.1`)), `${tool}.1 installed`);
    t.ok(existsSync(join(share, 'bash-completion/completions', tool)), `${tool}'s bash completion installed`);
  }
  t.ok(existsSync(join(share, 'zsh/site-functions/_conveyor')), 'zsh completion installed');
  for (const { name } of manSources().filter((source: { name: string }) => source.name.startsWith('conveyor-'))) {
    t.ok(existsSync(join(share, 'man/man1', `${name}.1`)), `${name}.1 installed`);
  }
  t.notOk(existsSync(join(dest, 'usr/local/bin/conveyor-gen-man')), 'the generators are not commands');
  const man = spawnSync('man', ['img-fetch'], { encoding: 'utf8', env: { ...process.env, MANPATH: join(share, 'man'), MANPAGER: 'cat', PAGER: 'cat' } });
  t.match(man.stdout, /img-fetch\s+-\s+pull images/, 'man img-fetch finds the installed page');
  make('uninstall');
  const left = spawnSync('find', [dest, '-type', 'f', '-o', '-type', 'l'], { encoding: 'utf8' }).stdout.trim();
  t.equal(left, '', 'nothing is left');
});
