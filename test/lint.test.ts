/**
 * The linter and formatter (Biome, biome.json) over the whole tree, as
 * `make lint` runs them: part of the suite so that CI enforces them.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { REPO_ROOT } from './helpers/fixtures.js';

t.test('biome ci: no lint errors, every file formatted', async (t) => {
  const run = spawnSync('pnpm', ['exec', 'biome', 'ci', '--colors=off', '.'], { cwd: REPO_ROOT, encoding: 'utf8' });
  t.equal(run.status, 0, `biome ci found problems (run make format, then make lint):\n${run.stdout}${run.stderr}`.slice(0, 20000));
});
