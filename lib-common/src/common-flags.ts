/**
 * The flags every tool understands (args.ts parses them beside a tool's own;
 * re-exported there). A module of its own, without minimist: a tool's head
 * (cli-head) reads the aliases without loading the parser. Cannot fail.
 */
export const COMMON_FLAGS = {
  string: ['log-format', 'progress', 'root'],
  boolean: ['help', 'version', 'quiet'],
  alias: { h: 'help', q: 'quiet' } as Record<string, string>,
};
