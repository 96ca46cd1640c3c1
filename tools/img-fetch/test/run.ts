/** Runs the built img-fetch in a clean environment (no Docker config of ours) and collects its records and messages. */
import { runTool, type ToolResult } from '../../../test/helpers/tools.js';

export function runFetch(args: string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<ToolResult> {
  return runTool('img-fetch', args, {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config', ...options.env },
    input: options.input,
  });
}
