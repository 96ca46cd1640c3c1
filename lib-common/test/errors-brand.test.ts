/**
 * errors.ts: a ConveyorError is recognised by its brand, not by which copy of
 * the module made it. A tool can load lib-common twice (a stale bundle's
 * fall-back to dist/cli.js reaches it by two paths); an error made by one copy
 * must keep its code in the other (toConveyorError, instanceof, isConveyorError),
 * or a store's ERR_STORE_CORRUPT is reported as ERR_INTERNAL.
 */
import t from 'tap';
import * as first from '../src/errors.js';

/** A second, separately evaluated copy of errors.ts (another URL is another module instance). */
async function secondCopy(): Promise<typeof first> {
  const url = new URL('../src/errors.ts', import.meta.url);
  url.search = '?copy=2';
  return import(url.href);
}

t.test('two copies of errors.ts are two modules with two classes', async (t) => {
  const second = await secondCopy();
  t.not(second.ConveyorError, first.ConveyorError, 'the classes differ (the situation under test)');
});

t.test('an error of one copy is recognised by the other, both ways', async (t) => {
  const second = await secondCopy();
  for (const [made, seen, what] of [
    [second, first, 'second → first'],
    [first, second, 'first → second'],
  ] as const) {
    const error = new made.ConveyorError('ERR_STORE_CORRUPT', 'index.json is not a valid OCI index', { hint: 'img-fsck' });
    t.ok(error instanceof seen.ConveyorError, `${what}: instanceof`);
    t.ok(seen.isConveyorError(error), `${what}: isConveyorError`);
    const converted = seen.toConveyorError(error);
    t.equal(converted, error, `${what}: toConveyorError passes it through`);
    t.equal(converted.code, 'ERR_STORE_CORRUPT', `${what}: its code stands (not ERR_INTERNAL)`);
    t.equal(seen.storeIoError(error), error, `${what}: storeIoError passes it through`);
  }
});

// [what, value, recognised]
const cases: [string, unknown, boolean][] = [
  ['a ConveyorError', new first.ConveyorError('ERR_USAGE', 'x'), true],
  ['a plain Error', new Error('x'), false],
  ['an Error named ConveyorError with a code', Object.assign(new Error('x'), { name: 'ConveyorError', code: 'ERR_USAGE' }), false],
  ['an object shaped like one', { name: 'ConveyorError', code: 'ERR_USAGE', message: 'x', exitCode: 2 }, false],
  ['a ConveyorError cloned by structured clone (a worker message)', structuredClone(new first.ConveyorError('ERR_USAGE', 'x')), false],
  ['null', null, false],
  ['undefined', undefined, false],
  ['a string', 'ERR_USAGE', false],
  ['a number', 2, false],
];
for (const [what, value, recognised] of cases) {
  t.test(`${what}: ${recognised ? '' : 'not '}a ConveyorError`, async (t) => {
    t.equal(first.isConveyorError(value), recognised, 'isConveyorError');
    t.equal(value instanceof first.ConveyorError, recognised, 'instanceof');
  });
}

t.test('not recognised, it is wrapped: ERR_INTERNAL (or ERR_STORE_IO for an errno)', async (t) => {
  t.equal(first.toConveyorError(new Error('boom')).code, 'ERR_INTERNAL');
  t.equal(first.toConveyorError(Object.assign(new Error('x'), { code: 'ENOENT', syscall: 'open' })).code, 'ERR_STORE_IO');
});

t.test('the brand is no field of the error: JSON and own keys are as before', async (t) => {
  const error = new first.ConveyorError('ERR_USAGE', 'x', { hint: 'h' });
  t.notOk(Object.getOwnPropertySymbols(error).length, 'no own symbol');
  t.strictSame(Object.keys(error).sort(), ['code', 'details', 'exitCode', 'hint', 'name'].sort());
});

t.test('a subclass keeps the ordinary instanceof', async (t) => {
  class Special extends first.ConveyorError {}
  const special = new Special('ERR_USAGE', 'x');
  t.ok(special instanceof Special, 'a Special is a Special');
  t.ok(special instanceof first.ConveyorError, 'and a ConveyorError');
  t.notOk(new first.ConveyorError('ERR_USAGE', 'x') instanceof Special, 'a plain ConveyorError is no Special');
  t.ok(special instanceof Error, 'and an Error');
});
