/**
 * The README's pipelines, run verbatim: the tools are linked onto PATH as
 * `make install` does, docker.io is mirrored by a real local registry (as
 * Docker's registry-mirrors would), and each command line is run by bash
 * exactly as a user would paste it.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, symlinkSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { busyboxLayout, REPO_ROOT } from './helpers/fixtures.js';
import { pushImage, startRegistry } from './helpers/registry.js';
import { removeStore, tempStore } from './helpers/rootfs.js';
import { runTool, toolPath } from './helpers/tools.js';

const run = promisify(execFile);

/** The indented command lines of the README's opening code block. */
function readmePipelines(): string[] {
  const text = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const block = text.split('\n## ')[0];
  return block
    .split('\n')
    .filter((l) => /^ {4}img-/.test(l))
    .map((l) => l.trim());
}

t.test('README pipelines run verbatim', async (t) => {
  const pipelines = readmePipelines();
  t.ok(pipelines.length >= 3, 'the README shows pipelines');
  const registry = await startRegistry();
  t.teardown(() => registry.stop());
  const layout = busyboxLayout();
  await pushImage(`${layout}:latest`, registry, 'library/alpine:latest');

  const root = tempStore('conveyor-readme-');
  t.teardown(() => removeStore(root));
  const bin = join(root, '..', `${root.split('/').pop()}-bin`);
  mkdirSync(bin, { recursive: true });
  for (const tool of readdirSync(join(REPO_ROOT, 'tools'))) {
    const target = toolPath(tool);
    if (existsSync(target)) symlinkSync(target, join(bin, tool));
  }
  const work = join(root, '..', `${root.split('/').pop()}-work`);
  mkdirSync(work, { recursive: true });
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, CONVEYOR_ROOT: root, CONVEYOR_REGISTRY_MIRRORS: registry.host };

  const outputs: string[] = [];
  for (const line of pipelines) {
    const result = await run('bash', ['-o', 'pipefail', '-c', line], { env, cwd: work }).catch((error) => error);
    t.equal(result.code ?? 0, 0, `exit 0: ${line}\n${result.stderr ?? ''}`);
    outputs.push(result.stdout);
  }
  t.equal(outputs[0], 'hello\n', 'the container printed hello');
  t.ok(existsSync(join(work, 'rootfs', 'bin', 'busybox')), 'the flattened rootfs holds busybox');
  t.equal(outputs[2], '', 'no image is over 100 MB');
  // conveyor-run: docker run's flags before the image, the command after it, the container's exit code.
  const runScript = join(REPO_ROOT, 'scripts', 'run.mjs');
  const ran = await run(process.execPath, [runScript, '--rm', '-e', 'A=1', '--init', 'alpine', 'sh', '-c', 'echo A=$A; exit 7'], { env }).catch(
    (error) => error,
  );
  t.equal(ran.code, 7, `conveyor-run returns the container's exit code ${ran.stderr}`);
  t.equal(ran.stdout, 'A=1\n', 'switches before the image do not swallow it');
  const stored = (await run('bash', ['-c', 'img-ls --refs'], { env })).stdout.split('\n').filter(Boolean).sort();
  t.strictSame(stored, ['docker.io/library/alpine:latest'], 'pulled through the mirror under docker.io names');
});

t.test('a failing mirror falls back to the origin, and says so', async (t) => {
  const registry = await startRegistry();
  t.teardown(() => registry.stop());
  await pushImage(`${busyboxLayout()}:latest`, registry, 'library/busybox:latest');
  const root = tempStore('conveyor-mirror-');
  t.teardown(() => removeStore(root));
  // The first mirror has nothing; the second has the image. docker.io is never reached.
  const empty = await startRegistry();
  t.teardown(() => empty.stop());
  const result = await runTool('img-fetch', ['--root', root, '--no-layers', '--registry-mirror', empty.host, '--registry-mirror', registry.host, 'busybox']);
  t.equal(result.code, 0, `img-fetch exits 0 (execFile rejected otherwise) ${result.stderr}`);
  t.equal(JSON.parse(result.stdout).ref, 'docker.io/library/busybox:latest');
  t.match(
    result.stderr,
    new RegExp(`mirror ${empty.host.replace(/\./g, '\\.')} failed for docker.io/library/busybox:latest: .*; trying ${registry.host.replace(/\./g, '\\.')}`),
  );
});
