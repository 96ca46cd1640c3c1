/**
 * img-fetch on a terminal (under script(1), a real pty): a docker-pull-like
 * summary on stdout instead of records, and live progress lines with bytes
 * redrawn in place; `--json` keeps records there. A real docker-registry.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { SHARED_IMAGES, hasSharedImages } from '../../../test/helpers/fixtures.js';
import { pushImage, rawManifest, startRegistry } from '../../../test/helpers/registry.js';
import { toolPath } from '../../../test/helpers/tools.js';

const execFileAsync = promisify(execFile);
if (!hasSharedImages) t.fail(`the shared images are missing: ${SHARED_IMAGES}`);

/** Runs img-fetch with stdin, stdout and stderr on one pty; resolves to everything the terminal showed. */
async function onTerminal(args: string[]): Promise<string> {
  // stty: a pty script(1) makes has no size; a real terminal has one.
  const command = 'stty cols 120; ' + [process.execPath, toolPath('img-fetch'), ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const { stdout } = await execFileAsync('script', ['-qec', command, '/dev/null'], { env: { ...process.env, COLUMNS: '120' }, maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

t.test('a summary, not records; progress lines in place; the second pull says the layers exist', async (t) => {
  const reg = await startRegistry();
  t.teardown(() => reg.stop());
  await pushImage(`${SHARED_IMAGES}/app:v1`, reg, 'team/app:v1');
  const { digest } = await rawManifest(reg, 'team/app:v1');
  const root = t.testdir();
  const ref = `${reg.host}/team/app:v1`;

  const first = await onTerminal(['--root', root, ref]);
  t.notMatch(first, /\{"type":/, 'no records on a terminal');
  t.match(first, new RegExp(`${ref}: pulled`));
  t.equal(first.match(/^[a-f0-9]{12}: Pull complete +\S+/gm)?.length, 3, 'a line per layer downloaded');
  t.match(first, new RegExp(`Digest: ${digest}`));
  t.match(first, new RegExp(`Status: Downloaded newer image for ${ref} \\(3 of 3 layers downloaded`));
  t.match(first, /img-fetch: download [a-f0-9]{12} done \(\S+ in \d+s\)/, 'a done line per layer');
  t.ok(first.includes('\x1b[3A\r\x1b[J'), 'live lines (three layers) are redrawn in place');
  t.match(first, /^[a-f0-9]{12}: download {2}\S+ \/ \S+ \[[=> ]+\]/m, 'a live line shows bytes of the total');

  const second = await onTerminal(['--root', root, '--pull', 'missing', ref]);
  t.match(second, new RegExp(`${ref}: found in the store`));
  t.equal(second.match(/^[a-f0-9]{12}: Already exists/gm)?.length, 3);
  t.match(second, new RegExp(`Status: Image is up to date for ${ref}`));

  const json = await onTerminal(['--root', root, '--pull', 'missing', '--json', '--no-layers', ref]);
  t.match(json, /^\{"type":"image",/m, '--json keeps records on a terminal');
});
