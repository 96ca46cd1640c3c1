/**
 * Dependency rules (as crane's depcheck_test does): no tool imports another
 * tool, lib-common imports no tool, and only cli.ts files touch the process's
 * I/O, environment, arguments or exit status; library modules take streams
 * and options.
 */
import t from 'tap';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { REPO_ROOT } from './helpers/fixtures.js';

const tools = readdirSync(join(REPO_ROOT, 'tools'));
const FORBIDDEN_IN_LIBRARY = /\bprocess\.(exit|exitCode|stdout|stderr|stdin|env|argv|chdir)\b/;

function sources(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => join(dir, f));
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)].map((m) => m[1]);
}

for (const tool of tools) {
  for (const file of sources(join(REPO_ROOT, 'tools', tool, 'src'))) {
    const name = relative(REPO_ROOT, file);
    t.test(name, async (t) => {
      for (const spec of imports(file)) {
        const other = tools.find((o) => o !== tool && (spec === o || spec.startsWith(`${o}/`) || spec.includes(`/tools/${o}/`) || spec.includes(`../${o}/`)));
        t.notOk(other, `imports another tool: ${spec}`);
      }
      if (!file.endsWith('/cli.ts')) {
        const match = FORBIDDEN_IN_LIBRARY.exec(readFileSync(file, 'utf8'));
        t.notOk(match, `library module touches ${match?.[0]}; pass it in from cli.ts`);
      }
    });
  }
}

for (const file of sources(join(REPO_ROOT, 'lib-common', 'src'))) {
  const name = relative(REPO_ROOT, file);
  t.test(name, async (t) => {
    for (const spec of imports(file)) {
      t.notOk(tools.some((o) => spec === o || spec.includes(`tools/${o}`)), `lib-common imports a tool: ${spec}`);
    }
    // cli.ts is the one runner that owns the process; everything else is library code.
    if (!file.endsWith('/cli.ts')) {
      const match = FORBIDDEN_IN_LIBRARY.exec(readFileSync(file, 'utf8'));
      t.notOk(match, `lib-common module touches ${match?.[0]}`);
    }
  });
}

t.test('every tool is a complete package', async (t) => {
  for (const tool of tools) {
    const dir = join(REPO_ROOT, 'tools', tool);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    t.equal(pkg.bin?.[tool], `bin/${tool}.js`, `${tool} has a bin`);
    t.ok(existsSync(join(dir, 'README.md')), `${tool} has a README`);
    t.ok(existsSync(join(dir, 'src', 'cli.ts')), `${tool} has src/cli.ts`);
  }
});
