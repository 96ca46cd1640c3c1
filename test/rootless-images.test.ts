/**
 * Rootless image side (issue 15): as the unprivileged test users (with and without subordinate
 * ranges), the image tools work with no user namespace and no privilege at all, on the default
 * store `$XDG_DATA_HOME/conveyor` (made 0700 with its missing parents): img-fetch from a real
 * registry, img-ls, img-inspect, img-tag, img-push (back to the registry), img-export and
 * img-import (a docker archive the user wrote), img-search (the registry's catalog). Afterwards
 * nothing in the store is owned by root, no keeper was made (no run/), and the store is 0700.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { busyboxLayout } from './helpers/fixtures.js';
import { pushImage, startRegistry } from './helpers/registry.js';
import { NOSUB_USER, SUB_USER, ownedByRoot, rootlessUser, runToolAs, userStore } from './helpers/rootless.js';

const registry = await startRegistry();
t.teardown(() => registry.stop());
await pushImage(`${busyboxLayout()}:latest`, registry, 'rl/busybox:latest');

for (const name of [SUB_USER, NOSUB_USER]) {
  t.test(`${name}: fetch, ls, inspect, tag, push, export, import, search without privilege`, async (t) => {
    const user = rootlessUser(name);
    const dir = join(userStore(user, t), '..');
    const xdg = join(dir, 'data', 'deeper');
    const store = join(xdg, 'conveyor');
    // A clean environment (runAs's), no Docker config, the XDG default store.
    const env = { XDG_DATA_HOME: xdg, DOCKER_CONFIG: join(dir, 'docker') };
    const run = (tool: string, args: string[], input?: string) => runToolAs(user, tool, args, { env, input });
    const ref = `${registry.host}/rl/busybox:latest`;

    const fetched = await run('img-fetch', [ref]);
    t.equal(fetched.code, 0, fetched.stderr);
    t.match(
      fetched.records.find((r) => r.type === 'image'),
      { ref, store },
    );
    for (const made of [join(dir, 'data'), xdg, store]) t.equal(statSync(made).mode & 0o777, 0o700, `${made} made 0700`);

    const listed = await run('img-ls', []);
    t.equal(listed.code, 0, listed.stderr);
    t.match(listed.records, [{ type: 'image', ref }]);

    const inspected = await run('img-inspect', [ref]);
    t.equal(inspected.code, 0, inspected.stderr);
    t.match(inspected.records[0], { type: 'inspect' });

    const pushedRef = `${registry.host}/rl/${name}:mine`;
    const tagged = await run('img-tag', [ref, pushedRef]);
    t.equal(tagged.code, 0, tagged.stderr);
    const pushed = await run('img-push', [pushedRef]);
    t.equal(pushed.code, 0, pushed.stderr);

    const archive = join(dir, 'bb.tar');
    const exported = await run('img-export', [ref, '-o', archive]);
    t.equal(exported.code, 0, exported.stderr);
    t.equal(statSync(archive).uid, user.uid, 'the archive is the user’s');
    const otherStore = join(dir, 'other');
    const imported = await run('img-import', ['--root', otherStore, '--ref', 'imported:1', archive]);
    t.equal(imported.code, 0, imported.stderr);
    t.match(
      imported.records.find((r) => r.type === 'image'),
      { ref: 'docker.io/library/imported:1', store: otherStore },
    );

    const searched = await run('img-search', [`${registry.host}/`]);
    t.equal(searched.code, 0, searched.stderr);
    const names = searched.records.map((r) => r.name);
    t.ok(
      names.some((n: string) => n.endsWith(`rl/${name}`)),
      `the pushed repository is in the catalog: ${names}`,
    );

    for (const root of [store, otherStore]) {
      t.strictSame(ownedByRoot(root), [], `nothing in ${root} is root's`);
      t.equal(statSync(root).mode & 0o777, 0o700);
      t.notOk(existsSync(join(root, 'run')), 'no user namespace was made');
    }
  });
}
