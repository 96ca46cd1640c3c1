#!/usr/bin/env node
/**
 * Writes the man pages: OUT/man1/<tool>.1 from each tools/<tool>/README.md, and
 * OUT/man1/conveyor-<script>.1 for the scripts of scripts/*.mjs that have a README
 * (docs/conveyor-<script>.md, or a `# conveyor-<script>` part of scripts/README.md; a script
 * without one gets no page). Usage: node scripts/build/gen-man.mjs [OUT] (default: man).
 * Lives under scripts/build/ so that `make install` does not link it as a conveyor-* command.
 * On failure (an unreadable README, an unwritable OUT) it exits 1 with the path in the message.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { markdownToMan } from './markdown-roff.mjs';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The conveyor version the tools print (lib-common/src/version.ts). */
export function conveyorVersion(repo = REPO) {
  const source = readFileSync(join(repo, 'lib-common/src/version.ts'), 'utf8');
  return /VERSION = '([^']+)'/.exec(source)?.[1] ?? '';
}

/** Splits a Markdown file at its level-1 headings: [{title, text}]. */
export function topLevelParts(markdown) {
  const parts = [];
  let fence = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*```/.test(line)) fence = !fence;
    const title = fence ? null : /^#\s+(.*?)\s*$/.exec(line);
    if (title) parts.push({ title: title[1].replace(/`/g, ''), lines: [line] });
    else if (parts.length > 0) parts.at(-1).lines.push(line);
  }
  return parts.map((p) => ({ title: p.title, text: `${p.lines.join('\n').trimEnd()}\n` }));
}

/** Every page to write: [{name, markdown}], tools first, then the scripts that have a README. */
export function manSources(repo = REPO) {
  const sources = [];
  for (const tool of readdirSync(join(repo, 'tools')).sort()) {
    const readme = join(repo, 'tools', tool, 'README.md');
    if (existsSync(readme)) sources.push({ name: tool, markdown: readFileSync(readme, 'utf8') });
  }
  const scriptsReadme = join(repo, 'scripts/README.md');
  const shared = existsSync(scriptsReadme) ? topLevelParts(readFileSync(scriptsReadme, 'utf8')) : [];
  for (const file of readdirSync(join(repo, 'scripts')).sort()) {
    if (!file.endsWith('.mjs')) continue;
    const name = `conveyor-${basename(file, '.mjs')}`;
    const own = join(repo, 'docs', `${name}.md`);
    const part = shared.find((p) => p.title === name);
    if (existsSync(own)) sources.push({ name, markdown: readFileSync(own, 'utf8') });
    else if (part) sources.push({ name, markdown: part.text });
  }
  return sources;
}

/** Writes OUT/man1/*.1 and returns the paths written. */
export function generateManPages(out, repo = REPO) {
  const dir = join(out, 'man1');
  mkdirSync(dir, { recursive: true });
  const version = `conveyor ${conveyorVersion(repo)}`;
  const written = [];
  for (const { name, markdown } of manSources(repo)) {
    const path = join(dir, `${name}.1`);
    writeFileSync(path, markdownToMan(markdown, { name, version }));
    written.push(path);
  }
  return written;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const written = generateManPages(resolve(process.argv[2] ?? join(REPO, 'man')));
    process.stdout.write(`gen-man: ${written.length} pages in ${dirname(written[0] ?? '.')}\n`);
  } catch (error) {
    process.stderr.write(`gen-man: ${error.message}\n`);
    process.exitCode = 1;
  }
}
