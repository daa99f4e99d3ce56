/**
 * The `ipclip` command line. `bin/ipclip.js` imports the compiled `dist/cli.js` and calls {@link main}; every
 * command lives in `lib/cli/*.ts`. Exit codes: 0 success, 1 failure (missing folder, bad file, failed target),
 * 2 wrong usage, 130 stopped by Ctrl-C (after writing the checkpoint where there is one).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { IpclipError } from '../core/errors.js';
import { UsageError, commandHelp, parseCommand, type Command, type Io } from './args.js';
import { PACKAGE_ROOT } from './common.js';
import { attackCommand } from './attack.js';
import { benchmarkCommand } from './benchmark.js';
import { demoCommand } from './demo.js';
import { evalCommand, verifyOwnershipCommand } from './evaluate.js';
import { classifyCommand, infoCommand, predictCommand } from './inspect.js';
import { convertCommand } from './convert.js';
import { importReleaseCommand } from './release.js';
import { buildCommand, pretrainCommand, synthCommand } from './tools.js';
import { EXIT_INTERRUPTED, trainCommand } from './train.js';

/**
 * Exit codes of {@link main}.
 * @category Command line
 */
export const EXIT = { ok: 0, failure: 1, usage: 2, interrupted: EXIT_INTERRUPTED } as const;

/**
 * The commands, in the order `--help` lists them.
 * @category Command line
 */
export const COMMANDS: readonly Command[] = [
  demoCommand, benchmarkCommand, trainCommand, evalCommand, predictCommand, classifyCommand, verifyOwnershipCommand, attackCommand, infoCommand, synthCommand,
  pretrainCommand, buildCommand, importReleaseCommand, convertCommand,
];

function version(): string {
  try {
    return (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The top-level `--help`. */
export function globalHelp(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return [
    'usage: ipclip <command> [flags]',
    '',
    'IP-CLIP: protect a CLIP classifier so that it works only on the data domains it is licensed for.',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(w)}${c.summary}`),
    '',
    "Run 'ipclip <command> --help' for a command's flags. --json gives machine-readable output where it applies.",
    'Exit codes: 0 success, 1 failure, 2 wrong usage, 130 stopped by Ctrl-C.',
    '',
  ].join('\n');
}

/**
 * Runs the command line `argv` (without `node` and the script) and resolves to the exit code. Errors are
 * printed as one clear line on stderr, never as a stack trace (set `IPCLIP_DEBUG=1` for the stack).
 * @category Command line
 */
export async function main(argv: string[]): Promise<number> {
  const io: Io = { stdout: process.stdout, stderr: process.stderr };
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    // No command at all is a usage error: the help goes to stderr, as for any other.
    (name === undefined ? io.stderr : io.stdout).write(topic ? commandHelp(topic) : globalHelp());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === '--version' || name === '-v') {
    io.stdout.write(`ipclip ${version()}\n`);
    return EXIT.ok;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    io.stderr.write(`ipclip: unknown command '${name}'. Commands: ${COMMANDS.map((c) => c.name).join(', ')}. Run 'ipclip --help'.\n`);
    return EXIT.usage;
  }
  try {
    const parsed = parseCommand(cmd, rest);
    if (parsed.values.help === true) {
      io.stdout.write(commandHelp(cmd));
      return EXIT.ok;
    }
    return await cmd.run(parsed, io);
  } catch (err) {
    return report(err, cmd, io, wantsJson(cmd, rest));
  }
}

/** `--json` was asked for: errors then also go to stdout as one JSON document, so a script always gets JSON. */
function wantsJson(cmd: Command, argv: string[]): boolean {
  return cmd.flags.json !== undefined && argv.includes('--json');
}

/** Prints an error and picks the exit code. */
function report(err: unknown, cmd: Command, io: Io, json = false): number {
  if (process.env.IPCLIP_DEBUG && err instanceof Error) io.stderr.write(`${err.stack}\n`);
  if (json) {
    const e = err as { code?: unknown; message?: unknown };
    const code = err instanceof UsageError ? 'ERR_USAGE' : typeof e?.code === 'string' ? e.code : 'ERR_UNKNOWN';
    io.stdout.write(`${JSON.stringify({ error: { code, message: typeof e?.message === 'string' ? e.message : String(err) } })}\n`);
  }
  if (err instanceof UsageError) {
    io.stderr.write(`ipclip ${cmd.name}: ${err.message}\nRun 'ipclip ${cmd.name} --help' for its flags.\n`);
    return EXIT.usage;
  }
  if (err instanceof IpclipError) {
    if (err.code === 'ERR_ABORTED') {
      io.stderr.write(`ipclip ${cmd.name}: stopped (${err.message})\n`);
      return EXIT.interrupted;
    }
    io.stderr.write(`ipclip ${cmd.name}: ${err.message} [${err.code}]\n`);
    return EXIT.failure;
  }
  const e = err as { code?: string; message?: string };
  io.stderr.write(`ipclip ${cmd.name}: ${e?.message ?? String(err)}${e?.code ? ` [${e.code}]` : ''}\n`);
  return EXIT.failure;
}
