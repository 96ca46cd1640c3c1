import t from 'tap';
import { parseArgs, intFlag, parseBytes } from '../src/args.js';

t.test('strings stay strings', async (t) => {
  const args = parseArgs(['--tag', '010', '0123'], { string: ['tag'] });
  t.equal(args.tag, '010');
  t.strictSame(args._, ['0123']);
});

// [argv, spec, message]
const usage: [string[], object, RegExp][] = [
  [['--bogus'], {}, /unknown flag --bogus/],
  [['-z'], {}, /unknown flag -z/],
  [['--tag', 'a', '--tag', 'b'], { string: ['tag'] }, /given more than once/],
  [['--tag'], { string: ['tag'] }, /needs a value/],
  [['--all=yes'], { boolean: ['all'] }, /takes no value/],
];
for (const [argv, spec, message] of usage) {
  t.test(`usage error: ${argv.join(' ')}`, async (t) => {
    t.throws(() => parseArgs(argv, spec), { code: 'ERR_USAGE', exitCode: 2, message });
  });
}

t.test('repeatable flags are always arrays', async (t) => {
  t.strictSame(parseArgs([], { multiple: ['env'] }).env, []);
  t.strictSame(parseArgs(['-e', 'A=1'], { multiple: ['env'], alias: { e: 'env' } }).env, ['A=1']);
  t.strictSame(parseArgs(['-e', 'A=1', '--env', 'B=2'], { multiple: ['env'], alias: { e: 'env' } }).env, ['A=1', 'B=2']);
});

t.test('words after -- are kept apart and verbatim', async (t) => {
  const args = parseArgs(['--memory', '1g', '--', 'sh', '-c', 'echo --x 007'], { string: ['memory'], stopAtDoubleDash: true });
  t.strictSame(args['--'], ['sh', '-c', 'echo --x 007']);
  t.equal(args.memory, '1g');
});

t.test('common flags are known to every tool', async (t) => {
  const args = parseArgs(['--root', '/r', '--log-format=json', '--progress', 'json', '-q', '--help']);
  t.equal(args.root, '/r');
  t.equal(args['log-format'], 'json');
  t.equal(args.quiet, true);
  t.equal(args.help, true);
});

t.test('intFlag bounds', async (t) => {
  t.equal(intFlag(parseArgs(['--jobs', '4'], { string: ['jobs'] }), 'jobs', 2), 4);
  t.equal(intFlag(parseArgs([], { string: ['jobs'] }), 'jobs', 2), 2);
  for (const bad of ['0', '-1', '1.5', 'x', '']) {
    t.throws(() => intFlag(parseArgs([`--jobs=${bad}`], { string: ['jobs'] }), 'jobs', 2, 1, 64), { code: 'ERR_USAGE' }, bad);
  }
});

const sizes: [string, number][] = [
  ['1024', 1024],
  ['1k', 1024],
  ['16m', 16 * 1024 ** 2],
  ['16MB', 16 * 1024 ** 2],
  ['1.5g', 1.5 * 1024 ** 3],
  ['2GiB', 2 * 1024 ** 3],
];
for (const [text, bytes] of sizes) t.equal(parseBytes(text, '--memory'), bytes, text);
for (const text of ['', 'm', '-1m', '1x', '1 2']) t.throws(() => parseBytes(text, '--memory'), { code: 'ERR_USAGE' }, text);
