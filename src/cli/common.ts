import yargs, { type Argv } from 'yargs';
import { UserError } from '../util/errors.js';
import { TOOL_VERSION } from '../version.js';

/** yargs set up so that every parse error is one line naming the flag, not a help dump. */
export function cli(name: string, argv: string[]): Argv {
  return yargs(argv)
    .scriptName(name)
    .version(TOOL_VERSION)
    .strict()
    .wrap(Math.min(110, process.stdout.columns || 100))
    .parserConfiguration({ 'camel-case-expansion': true, 'strip-aliased': true, 'duplicate-arguments-array': false })
    .fail((msg, err) => {
      // yargs' own parse errors (YError) are the user's to fix; anything else is ours.
      if (err && err.name !== 'YError') throw err;
      // Some yargs messages span lines ("Invalid values:\n  Argument: ..."): one line here.
      throw new UserError(`${String(msg ?? err?.message).replace(/\s*\n\s*/g, ' ')}; see ${name} --help`);
    });
}

/** "1/255", "0.5", "1e-3" -> number */
export function parseNumber(flag: string, text: string | number): number {
  if (typeof text === 'number') return text;
  const m = /^\s*([-+]?[\d.]+(?:e[-+]?\d+)?)\s*\/\s*([-+]?[\d.]+(?:e[-+]?\d+)?)\s*$/i.exec(text);
  const v = m ? Number(m[1]) / Number(m[2]) : Number(text);
  if (!Number.isFinite(v) || String(text).trim() === '') throw new UserError(`--${flag} ${text}: expected a number (fractions like 1/255 are fine)`);
  return v;
}

/** "1,28,28" -> [1, 28, 28]; also accepts repeated flags. */
export function parseList(flag: string, value: unknown, integer: boolean): number[] | undefined {
  if (value === undefined) return undefined;
  const items = (Array.isArray(value) ? value : [value]).flatMap((v) => String(v).split(',')).map((s) => s.trim()).filter(Boolean);
  const nums = items.map((s) => parseNumber(flag, s));
  if (integer && nums.some((n) => !Number.isInteger(n))) throw new UserError(`--${flag} ${items.join(',')}: expected comma-separated integers`);
  if (nums.length === 0) throw new UserError(`--${flag}: expected a comma-separated list`);
  return nums;
}

export function positiveInt(flag: string, v: number | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < 1) throw new UserError(`--${flag} ${v}: expected a positive integer`);
  return v;
}
