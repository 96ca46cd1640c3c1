/**
 * conveyor-promote (scripts/promote.mjs) against a real registry: an image
 * skopeo pushed to a staging repository is promoted to a release repository
 * of the same registry (pulled into an empty store, tagged, pushed: every
 * blob mounted, none uploaded; the registry serves the release tag with the
 * staging digest); a second promotion uploads nothing; a source the registry
 * does not have fails with img-fetch's exit code; usage errors exit 2.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { busyboxLayout, REPO_ROOT } from './helpers/fixtures.js';
import { pushImage, rawManifest, startRegistry } from './helpers/registry.js';
import { removeStore, tempStore } from './helpers/rootfs.js';

const run = promisify(execFile);
const PROMOTE = join(REPO_ROOT, 'scripts', 'promote.mjs');
const env = { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config' };
const promote = (args: string[]) =>
  run(process.execPath, [PROMOTE, ...args], { env }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }),
  );
const uploads = (log: string, repo: string) => (log.match(new RegExp(`"(PUT|PATCH) /v2/${repo}/blobs/uploads/`, 'g')) ?? []).length;

const reg = await startRegistry();
t.teardown(() => reg.stop());
await pushImage(`${busyboxLayout()}:latest`, reg, 'staging/app:rc1');
const staged = await rawManifest(reg, 'staging/app:rc1');
const root = tempStore('conveyor-promote-');
t.teardown(() => removeStore(root));

t.test('promotes: pulled, tagged, pushed by mounts, verified', async (t) => {
  const mark = reg.logs().length;
  const r = await promote(['--root', root, `${reg.host}/staging/app:rc1`, `${reg.host}/release/app:1.0`]);
  t.equal(r.code, 0, r.stderr);
  const record = JSON.parse(r.stdout);
  t.match(record, { type: 'image', ref: `${reg.host}/release/app:1.0`, digest: staged.digest });
  t.equal((await rawManifest(reg, 'release/app:1.0')).digest, staged.digest);
  const log = reg.logs().slice(mark);
  t.equal(uploads(log, 'release/app'), 0, 'no blob uploaded');
  t.match(log, /"POST \/v2\/release\/app\/blobs\/uploads\/\?[^"]*mount=[^"]*" 201/);
  t.match(r.stderr, /promoted .*staging\/app:rc1 to .*release\/app:1\.0/);
});

t.test('a second promotion uploads nothing', async (t) => {
  const mark = reg.logs().length;
  const r = await promote(['--root', root, '-q', `${reg.host}/staging/app:rc1`, `${reg.host}/release/app:1.0`]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr, '', 'quiet');
  t.notMatch(reg.logs().slice(mark), /"(POST|PUT|PATCH) \/v2\/[^ ]*\/blobs\/uploads/);
});

t.test('a source the registry lacks: img-fetch fails it, exit 1, nothing pushed', async (t) => {
  const mark = reg.logs().length;
  const r = await promote(['--root', root, `${reg.host}/staging/app:nope`, `${reg.host}/release/app:nope`]);
  t.equal(r.code, 1);
  t.match(r.stderr, /img-fetch: .*manifest unknown/i);
  t.notMatch(reg.logs().slice(mark), /release\/app/);
});

t.test('usage: exit 2', async (t) => {
  for (const args of [[`${reg.host}/staging/app:rc1`], ['--bogus', 'a', 'b'], ['--pull', 'sometimes', 'a', 'b']]) {
    const r = await promote(['--root', root, ...args]);
    t.equal(r.code, 2, args.join(' '));
  }
  const help = await promote(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /Usage: conveyor-promote/);
});
