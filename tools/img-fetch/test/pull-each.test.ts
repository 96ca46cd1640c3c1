/**
 * img-fetch's per-reference error collection and exit policy, without
 * spawning the tool: every reference is tried, failures are reported one by
 * one, the first failure's exit code is the run's, passthrough records keep
 * their place.
 */
import t from 'tap';
import { ConveyorError, EXIT } from '@conveyor/lib-common/errors';
import type { FetchResult } from '../src/fetch.js';
import type { InputItem } from '../src/input.js';
import { argumentItems } from '@conveyor/lib-common/reference-input';
import { pullEach } from '../src/pull-each.js';

/** A fake pull: `ok/...` succeeds (`ok/store/...` from the store), `bad-ref/...` is a usage error, `missing/...` not found, `crash/...` a plain Error. */
async function fakePull(ref: string): Promise<FetchResult> {
  if (ref.startsWith('bad-ref/')) throw new ConveyorError('ERR_REF_INVALID', `invalid reference ${ref}`);
  if (ref.startsWith('missing/')) throw new ConveyorError('ERR_REGISTRY_NOT_FOUND', `${ref}: HTTP 404`);
  if (ref.startsWith('crash/')) throw new TypeError(`cannot read ${ref}`);
  const record = { ref, digest: `sha256:${'a'.repeat(64)}`, layers: [{}, {}] } as unknown as FetchResult['record'];
  return { record, source: ref.startsWith('ok/store/') ? 'store' : 'pulled', downloadedLayers: 1 };
}

function refs(...names: string[]): InputItem[] {
  return names.map((ref) => ({ kind: 'ref', ref, source: 'test' }));
}

t.test('exit code: 0 when all pull, else the first failure', async (t) => {
  // [name, references, exit code, references reported as failed]
  const cases: [string, string[], number, string[]][] = [
    ['nothing to do', [], EXIT.OK, []],
    ['all pulled', ['ok/a', 'ok/store/b'], EXIT.OK, []],
    ['one not found', ['ok/a', 'missing/b', 'ok/c'], EXIT.FAILED, ['missing/b']],
    ['a bad reference first wins over a later failure', ['bad-ref/a', 'missing/b'], EXIT.USAGE, ['bad-ref/a', 'missing/b']],
    ['a failure first wins over a later bad reference', ['missing/a', 'bad-ref/b'], EXIT.FAILED, ['missing/a', 'bad-ref/b']],
    ['an unexpected error is internal (1) and the rest still run', ['crash/a', 'ok/b'], EXIT.FAILED, ['crash/a']],
  ];
  for (const [name, input, code, failed] of cases) {
    const pulled: string[] = [];
    const errors: ConveyorError[] = [];
    const exit = await pullEach(refs(...input), {
      pull: async (ref) => {
        pulled.push(ref);
        return fakePull(ref);
      },
      write: async () => undefined,
      error: (error) => errors.push(error),
    });
    t.equal(exit, code, `${name}: exit code`);
    t.strictSame(pulled, input, `${name}: every reference was tried, in order`);
    t.equal(errors.length, failed.length, `${name}: one report per failure`);
    for (const [i, ref] of failed.entries()) t.match(errors[i]?.message ?? '', ref, `${name}: report ${i + 1} names ${ref}`);
    t.ok(
      errors.every((e) => e instanceof ConveyorError),
      `${name}: reports are ConveyorErrors`,
    );
  }
});

t.test('an unexpected error is reported as ERR_INTERNAL', async (t) => {
  const errors: ConveyorError[] = [];
  await pullEach(refs('crash/x'), { pull: fakePull, write: async () => undefined, error: (e) => errors.push(e) });
  t.equal(errors[0]?.code, 'ERR_INTERNAL');
});

t.test('passthrough records keep their place; info only for registry pulls', async (t) => {
  const out: string[] = [];
  const info: string[] = [];
  const items: InputItem[] = [
    { kind: 'passthrough', record: { type: 'rootfs', n: 1 } },
    ...refs('ok/a'),
    { kind: 'passthrough', record: { type: 'mount', n: 2 } },
    ...refs('ok/store/b', 'missing/c'),
    { kind: 'passthrough', record: { type: 'container', n: 3 } },
  ];
  async function* stream() {
    yield* items;
  }
  const exit = await pullEach(stream(), {
    pull: async (ref) => {
      out.push(`pull ${ref}`);
      return fakePull(ref);
    },
    write: async (record) => {
      out.push(`write ${record.type}`);
    },
    info: (message) => info.push(message),
    error: () => undefined,
  });
  t.equal(exit, EXIT.FAILED);
  t.strictSame(out, ['write rootfs', 'pull ok/a', 'write mount', 'pull ok/store/b', 'pull missing/c', 'write container']);
  t.equal(info.length, 1, 'the store hit says nothing');
  t.match(info[0], /^pulled ok\/a \(sha256:a{64}, 1 of 2 layers downloaded\)$/);
});

t.test('a failing write of a passthrough record ends the run', async (t) => {
  const closed = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
  await t.rejects(
    pullEach([{ kind: 'passthrough', record: { type: 'x' } }, ...refs('ok/a')], {
      pull: fakePull,
      write: async () => {
        throw closed;
      },
      error: () => undefined,
    }),
    closed,
  );
});

t.test('argumentItems', async (t) => {
  t.strictSame(argumentItems(['alpine', 'busybox:1']), [
    { kind: 'ref', ref: 'alpine', source: 'argument 1' },
    { kind: 'ref', ref: 'busybox:1', source: 'argument 2' },
  ]);
});
