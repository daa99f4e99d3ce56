/**
 * The `ipclip` command line as a library (`import { main } from 'ipclip/cli'`): what `bin/ipclip.js` runs.
 * `main(argv)` parses one command line and returns the exit status; {@link COMMANDS} lists the commands, each
 * described once (the description drives parsing and `--help`).
 *
 * @packageDocumentation
 * @module ipclip/cli
 */

// --- Command line ---------------------------------------------------------------------------------------------------
export { main, COMMANDS, EXIT } from './main.js';
export type { Command, FlagSpec, Io, Parsed } from './args.js';
