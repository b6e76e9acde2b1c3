/**
 * Minimal structural checks for JSON read from disk. A check throws FieldError naming the field path
 * (e.g. `shards[3].sha256`); checkJson turns that into one user-facing line naming the file.
 */
import { UserError } from '../util/errors.js';

export type Check = (value: unknown, at: string) => void;

export class FieldError extends Error {
  constructor(readonly field: string, readonly expected: string, readonly got: unknown) {
    super(`field ${field || '(top level)'} must be ${expected} (found ${describe(got)})`);
  }
}

/** Run `check` on `value`; failures become `<file>: field X must be Y (found Z); <fix>`. */
export function checkJson(value: unknown, check: Check, file: string, fix: string): void {
  try {
    check(value, '');
  } catch (err) {
    if (err instanceof FieldError) throw new UserError(`${file}: ${err.message}; ${fix}`);
    throw err;
  }
}

export function fieldFail(at: string, expected: string, got: unknown): never {
  throw new FieldError(at, expected, got);
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'object') return 'an object';
  const text = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

const join = (at: string, key: string | number): string =>
  typeof key === 'number' ? `${at}[${key}]` : at ? `${at}.${key}` : key;

export const str: Check = (v, at) => {
  if (typeof v !== 'string') fieldFail(at, 'a string', v);
};

export const bool: Check = (v, at) => {
  if (typeof v !== 'boolean') fieldFail(at, 'true or false', v);
};

export const finite: Check = (v, at) => {
  if (typeof v !== 'number' || !Number.isFinite(v)) fieldFail(at, 'a finite number', v);
};

export const sha256: Check = (v, at) => {
  if (typeof v !== 'string' || !/^[0-9a-f]{64}$/.test(v)) fieldFail(at, 'a sha256 (64 lowercase hex digits)', v);
};

/** An integer in [min, max]; max defaults to the largest exactly representable integer. */
export function int(min: number, max = Number.MAX_SAFE_INTEGER): Check {
  return (v, at) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
      fieldFail(at, `an integer from ${min} to ${max}`, v);
    }
  };
}

export function oneOf(...values: readonly (string | number)[]): Check {
  return (v, at) => {
    if (!values.includes(v as string | number)) fieldFail(at, `one of ${values.map((x) => JSON.stringify(x)).join(', ')}`, v);
  };
}

export function nullable(check: Check): Check {
  return (v, at) => {
    if (v !== null) check(v, at);
  };
}

export function optional(check: Check): Check {
  return (v, at) => {
    if (v !== undefined) check(v, at);
  };
}

export function arrayOf(item: Check, maxLength = 1 << 24): Check {
  return (v, at) => {
    if (!Array.isArray(v)) fieldFail(at, 'an array', v);
    if (v.length > maxLength) fieldFail(at, `an array of at most ${maxLength}`, v);
    v.forEach((x, i) => item(x, join(at, i)));
  };
}

/** An object with (at least) these keys; unknown keys are allowed so newer writers stay readable. */
export function object(shape: Record<string, Check>): Check {
  return (v, at) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) fieldFail(at, 'an object', v);
    const obj = v as Record<string, unknown>;
    for (const [key, check] of Object.entries(shape)) {
      // Own properties only: "__proto__" or inherited names must not satisfy a required field.
      check(Object.prototype.hasOwnProperty.call(obj, key) ? obj[key] : undefined, join(at, key));
    }
  };
}
