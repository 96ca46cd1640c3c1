/** The mount option plan: absolute paths while they fit a page, short links past it, a clear error past that. */
import t from 'tap';
import { containerPaths, planOverlay, shortLinkName, MOUNT_OPTIONS_LIMIT } from '@conveyor/lib-common/overlay/mount';
import { Store } from '@conveyor/lib-common/store';

const id = 'a'.repeat(64);
const layers = (store: Store, n: number) => Array.from({ length: n }, (_, i) => `${store.root}/layers/${String(i).padStart(64, '0')}/diff`);

// [store root, layers, links?, error?]
const cases: [string, number, boolean, RegExp?][] = [
  ['/var/lib/conveyor', 1, false],
  ['/var/lib/conveyor', 30, false],
  ['/var/lib/conveyor', 60, true],
  ['/' + 'x'.repeat(300), 10, true],
  ['/var/lib/con:veyor', 1, true],
  ['/var/lib/con,veyor', 1, true],
  ['/var/lib/conveyor', 130, true],
  ['/var/lib/conveyor', 200, true],
  ['/var/lib/conveyor', 300, false, /do not fit/],
];
for (const [root, n, links, error] of cases) {
  const store = new Store(root);
  const paths = containerPaths(store, id);
  const name = `${n} layers in ${root.length > 40 ? `a ${root.length}-byte root` : root}`;
  if (error) {
    t.throws(() => planOverlay(store, layers(store, n), paths), { code: 'ERR_MOUNT_FAILED', message: error }, name);
    continue;
  }
  const plan = planOverlay(store, layers(store, n), paths);
  t.ok(plan.options.length <= MOUNT_OPTIONS_LIMIT, `${name}: fits a page`);
  t.equal(plan.links.length > 0, links, `${name}: ${links ? 'short links' : 'absolute paths'}`);
  if (links) {
    t.equal(plan.cwd, store.linksDir);
    t.equal(plan.links[0].target, layers(store, n).at(-1), 'the top layer comes first');
    t.match(plan.options, /^lowerdir=[a-f0-9]{12}(:[a-f0-9]{12})*,upperdir=\.\.\/containers\/a{64}\/upper,workdir=\.\.\/containers\/a{64}\/work$/);
  } else {
    t.equal(plan.options.split(',')[0].split(':')[0], `lowerdir=${layers(store, n).at(-1)}`, 'the top layer comes first');
  }
}
t.equal(shortLinkName('/a/b'), shortLinkName('/a/b/'), 'one link per layer dir');
t.not(shortLinkName('/a/b'), shortLinkName('/a/c'));
