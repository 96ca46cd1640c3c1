/**
 * cli-head: what a tool's head answers (earlyAnswer, with its shortcuts: one word alone, and no
 * parse at all when no word could ask) is what runCli answers (parseArgs, then earlyText), for
 * every argument list below under each spec, a tool's own aliases and defaults included.
 */
import t from 'tap';
import { parseArgs, type ArgSpec } from '../src/args.js';
import { earlyAnswer, earlyText, mayAskEarly, type ToolHead } from '../src/cli-head.js';
import { VERSION } from '../src/version.js';

/** runCli's answer: parse, then the text; a usage error is no answer (the run reports it). */
function runCliAnswer(head: ToolHead, argv: string[]): string | undefined {
  try {
    return earlyText(head, parseArgs(argv, head.spec));
  } catch {
    return undefined;
  }
}

const SPECS: [string, ArgSpec | undefined][] = [
  ['no spec', undefined],
  ['img-ls', { boolean: ['json', 'table', 'all', 'digests', 'refs'], alias: { a: 'all' } }],
  ['a value flag and a repeatable one', { string: ['root-ish', 'tag'], multiple: ['filter'], alias: { t: 'tag', f: 'filter' } }],
  [
    'ctr-spawn-like (-- collects the command, -h is the hostname)',
    { string: ['hostname'], boolean: ['detach'], alias: { h: 'hostname', d: 'detach' }, stopAtDoubleDash: true },
  ],
  ['stops at the first word', { boolean: ['x'], stopEarly: true }],
  ['-V is --version', { alias: { V: 'version' } }],
  ['help on by default', { default: { help: true } }],
];

const ARGVS: string[][] = [
  [],
  ['--help'],
  ['-h'],
  ['--version'],
  ['--h'],
  ['-V'],
  ['-qh'],
  ['-hq'],
  ['--no-help'],
  ['--help=yes'],
  ['--help', '--version'],
  ['--version', 'extra'],
  ['--json', '--help'],
  ['--bogus', '--help'],
  ['--help', '--bogus'],
  ['--root', '/tmp/h', '--json'],
  ['--root', '--help'],
  ['--tag', 'x', '-h'],
  ['-t', 'h'],
  ['-th'],
  ['pattern', '--help'],
  ['--', '--help'],
  ['--detach', '--', 'sh', '-h'],
  ['-d', '-h', 'box'],
  ['--log-format', 'json', '--version'],
  ['-q'],
  ['--quiet', 'busybox'],
  ['-'],
  ['--json'],
  ['-x'],
];

t.test('the head answers every argument list as runCli does, under every spec', async (t) => {
  for (const [what, spec] of SPECS) {
    const head: ToolHead = { name: 'tool', help: 'Usage: tool\n\nExamples:\n  tool', spec };
    for (const argv of ARGVS) {
      t.equal(earlyAnswer(head, argv, {}, parseArgs), runCliAnswer(head, argv), `${what}: ${JSON.stringify(argv)}`);
    }
  }
});

t.test('the answers themselves', async (t) => {
  const head: ToolHead = { name: 'tool', help: 'Usage: tool', spec: { boolean: ['json'] } };
  t.equal(earlyAnswer(head, ['--help'], {}, parseArgs), 'Usage: tool\n', 'the help, ending in a newline');
  t.equal(earlyAnswer(head, ['-h'], {}, parseArgs), 'Usage: tool\n');
  t.equal(earlyAnswer(head, ['--version'], {}, parseArgs), `tool ${VERSION}\n`);
  t.equal(earlyAnswer(head, ['--json', '-h'], {}, parseArgs), 'Usage: tool\n', 'with other flags');
  t.equal(earlyAnswer(head, ['--json'], {}, parseArgs), undefined, 'a run: no answer');
  t.equal(earlyAnswer(head, ['--bogus', '--help'], {}, parseArgs), undefined, 'a usage error: no answer (the body reports it)');
  t.equal(earlyAnswer(head, ['--help'], { CONVEYOR_DUMP_FLAGS: '1' }, parseArgs), undefined, 'CONVEYOR_DUMP_FLAGS: the body prints the flags');
});

t.test('a run needs no parse in the head', async (t) => {
  const table: [string[], ArgSpec | undefined, boolean][] = [
    [['--root', '/s', '--net', 'none', '--', '/bin/true', '-h'], { string: ['net'], stopAtDoubleDash: true }, false],
    [['busybox', '--json'], { boolean: ['json'] }, false],
    [['-q'], undefined, false],
    [['-qh'], undefined, true],
    [['--help'], undefined, true],
    [['--no-version'], undefined, true],
    [['-V'], { alias: { V: 'version' } }, true],
    [['-h'], { string: ['hostname'], alias: { h: 'hostname' } }, false],
    [[], { default: { version: true } }, true],
  ];
  for (const [argv, spec, may] of table) t.equal(mayAskEarly(argv, spec), may, `${JSON.stringify(argv)} ${JSON.stringify(spec)}`);
  // The parser (minimist) is loaded by a head only when it must parse.
  let parses = 0;
  const counted = (argv: string[], spec?: ArgSpec) => {
    parses += 1;
    return parseArgs(argv, spec);
  };
  const head: ToolHead = { name: 'tool', help: 'Usage: tool', spec: { boolean: ['json'] } };
  t.equal(earlyAnswer(head, ['--root', '/s', '--json', 'x'], {}, counted), undefined, 'a run');
  t.equal(earlyAnswer(head, ['--help'], {}, counted), 'Usage: tool\n', '--help alone');
  t.equal(parses, 0, 'neither parsed');
  t.equal(earlyAnswer(head, ['--json', '--help'], {}, counted), 'Usage: tool\n', '--help with another flag');
  t.equal(parses, 1, 'parsed');
});
