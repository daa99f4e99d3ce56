/**
 * Argument handling shared by the `ipclip` commands: a command is described once (flags with help text), parsed
 * strictly with node:util's parseArgs, and its `--help` is generated from the same description. Bad usage is a
 * {@link UsageError} (exit code 2); everything else that fails is exit code 1.
 */
import { parseArgs } from 'node:util';

/** A wrong flag, a missing argument or a bad flag value: the command was not run (exit code 2). */
export class UsageError extends Error {
  constructor(message: string, readonly command?: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * One flag of a command.
 * @category Command line
 */
export interface FlagSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Shown in `--help` as `--name <value>`. */
  value?: string;
  help: string;
  /** Allowed more than once (values collected in order). */
  multiple?: boolean;
}

/**
 * What a command receives.
 * @category Command line
 */
export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
}

/**
 * Parsed arguments: flag values by name, and the positional arguments.
 * @category Command line
 */
export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/**
 * A command of the CLI.
 * @category Command line
 */
export interface Command {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Usage line(s) after `ipclip `, e.g. `'predict <image...> --checkpoint FILE'`. */
  usage: string;
  /** Paragraphs after the flags in `--help`. */
  details?: string;
  flags: Record<string, FlagSpec>;
  /** Whether positional arguments are accepted. */
  positionals?: boolean;
  /** Runs the command; resolves to the exit code. */
  run(args: Parsed, io: Io): Promise<number>;
}

/** Flags every command has. */
export const COMMON_FLAGS: Record<string, FlagSpec> = {
  help: { type: 'boolean', short: 'h', help: 'show this help' },
};

/**
 * Parses `argv` for `cmd` strictly: unknown flags, a missing value, or positionals where none are taken are
 * {@link UsageError}s naming the problem.
 */
export function parseCommand(cmd: Command, argv: string[]): Parsed {
  const flags = { ...COMMON_FLAGS, ...cmd.flags };
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const [name, f] of Object.entries(flags)) {
    options[name] = { type: f.type, ...(f.short ? { short: f.short } : {}), ...(f.multiple ? { multiple: true } : {}) };
  }
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (err) {
    const message = cleanParseMessage((err as Error).message);
    const unknown = /^unknown flag '--?([^'=]+)/.exec(message);
    const near = unknown ? nearestName(unknown[1]!, Object.keys(flags)) : null;
    throw new UsageError(near ? `${message}: did you mean --${near}?` : message, cmd.name);
  }
  if (parsed.values.help === true) return { values: parsed.values as Parsed['values'], positionals: parsed.positionals };
  if (!cmd.positionals && parsed.positionals.length > 0) {
    throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`, cmd.name);
  }
  return { values: parsed.values as Parsed['values'], positionals: parsed.positionals };
}

/**
 * The flag name closest to a mistyped one (Damerau–Levenshtein distance ≤ 2, or ≤ 1 for names of up to 4
 * characters; a prefix of a longer name also counts), or null: `--epoch` → `epochs`, `--lrr` → `lr`.
 */
export function nearestName(typed: string, names: string[]): string | null {
  const t = typed.toLowerCase();
  let best: string | null = null;
  let bestD = Infinity;
  for (const name of names) {
    const d = name.startsWith(t) && t.length >= 3 ? 1 : editDistance(t, name.toLowerCase());
    if (d < bestD) { best = name; bestD = d; }
  }
  return best !== null && bestD <= (t.length <= 4 ? 1 : 2) ? best : null;
}

/** Damerau–Levenshtein (optimal string alignment) distance: insertions, deletions, substitutions, swaps. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** parseArgs' messages mention its own API ("To specify an option argument starting with a dash use..."). */
function cleanParseMessage(message: string): string {
  const m = /^Unknown option '([^']+)'/.exec(message);
  if (m) return `unknown flag '${m[1]}'`;
  const v = /^Option '([^']+)' argument missing/.exec(message);
  if (v) return `flag '${v[1]!.replace(/ <value>$/, '')}' needs a value`;
  return message.split('. To ')[0]!.replace(/\.$/, '');
}

/** The `--help` text of a command. */
export function commandHelp(cmd: Command): string {
  const flags = { ...cmd.flags, ...COMMON_FLAGS };
  const left = Object.entries(flags).map(([name, f]) =>
    `${f.short ? `-${f.short}, ` : '    '}--${name}${f.type === 'string' ? ` <${f.value ?? 'value'}>` : ''}`);
  const width = Math.max(...left.map((l) => l.length)) + 2;
  const lines = Object.values(flags).map((f, i) => `  ${left[i]!.padEnd(width)}${f.help}`);
  return [
    `usage: ipclip ${cmd.usage}`,
    '',
    cmd.summary,
    '',
    'flags:',
    ...lines,
    ...(cmd.details ? ['', cmd.details.trim()] : []),
    '',
  ].join('\n');
}

// --- Typed flag readers ------------------------------------------------------------------------------------------

/** A string flag, or `undefined`. */
export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new UsageError(`--${name} expects a value`);
  if (v.length === 0) throw new UsageError(`--${name} must not be empty`);
  return v;
}

/** A required string flag. */
export function required(p: Parsed, name: string, what: string): string {
  const v = str(p, name);
  if (v === undefined) throw new UsageError(`--${name} is required (${what})`);
  return v;
}

/** A boolean flag (false when absent). */
export function bool(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

/** An integer flag within [min, max], or `fallback`. */
export function int(p: Parsed, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = str(p, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be an integer${max < Number.MAX_SAFE_INTEGER ? ` from ${min} to ${max}` : ` ≥ ${min}`}, got '${v}'`);
  }
  return n;
}

/** A positive finite number flag, or `fallback`. */
export function positiveNumber(p: Parsed, name: string, fallback: number): number {
  const v = str(p, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n <= 0) throw new UsageError(`--${name} must be a positive number, got '${v}'`);
  return n;
}

/** A number flag in [0, 1], or `fallback`. */
export function unitFraction(p: Parsed, name: string, fallback: number): number {
  const v = str(p, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v.trim() === '' || !(n >= 0 && n <= 1)) throw new UsageError(`--${name} must be a number from 0 to 1, got '${v}'`);
  return n;
}

/** A flag restricted to `choices`, or `fallback`. */
export function choice<T extends string>(p: Parsed, name: string, choices: readonly T[], fallback: T): T {
  const v = str(p, name);
  if (v === undefined) return fallback;
  if (!(choices as readonly string[]).includes(v)) throw new UsageError(`--${name} must be one of ${choices.join(', ')}; got '${v}'`);
  return v as T;
}

/** A comma-separated list flag (also accepted repeated), or `undefined`. */
export function list(p: Parsed, name: string): string[] | undefined {
  const v = p.values[name];
  if (v === undefined) return undefined;
  const parts = (Array.isArray(v) ? v : [String(v)]).flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s.length > 0);
  if (parts.length === 0) throw new UsageError(`--${name} needs at least one name`);
  return parts;
}
