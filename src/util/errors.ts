/**
 * Errors a user can fix. The CLI prints their message as one line and exits non-zero, with no
 * stack trace; anything else is a bug and is reported as such.
 */
export class UserError extends Error {
  /** the errno code (ENOSPC, EROFS, ...) when made by describeFsError, for callers that add advice */
  fsCode?: string;
  constructor(message: string, readonly exitCode = 2) {
    super(oneLine(message));
    this.name = 'UserError';
  }
}

/**
 * Messages quote names read from files (column names, header text); a damaged file can put newlines
 * and other control characters there, which must not break the one-line contract.
 */
function oneLine(text: string): string {
  return text.replace(/[\u0000-\u001f]/g, (c) => JSON.stringify(c).slice(1, -1));
}

export function fail(message: string): never {
  throw new UserError(message);
}

/** Node's system errors carry a code; map the ones a user can act on to a one-line fix. */
export function describeFsError(err: unknown, path: string, action: string): UserError | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const e = fsMessage(code, path, action);
  if (e) e.fsCode = code;
  return e;
}

function fsMessage(code: string | undefined, path: string, action: string): UserError | undefined {
  switch (code) {
    case 'ENOENT': return new UserError(`${path}: no such file or directory (cannot ${action})`);
    case 'EACCES':
    case 'EPERM': return new UserError(`${path}: permission denied (cannot ${action}); choose a writable location or fix its permissions`);
    case 'EROFS': return new UserError(`${path}: read-only file system (cannot ${action}); choose a writable location`);
    case 'ENOSPC': return new UserError(`${path}: no space left on device (cannot ${action}); free space and rerun the same command: finished work is kept`);
    case 'EDQUOT': return new UserError(`${path}: disk quota exceeded (cannot ${action}); free space and rerun the same command: finished work is kept`);
    case 'EISDIR': return new UserError(`${path}: is a directory, expected a file`);
    case 'ENOTDIR': return new UserError(`${path}: a parent of this path is not a directory`);
    default: return undefined;
  }
}

/** Run a CLI entry point: user errors become one line on stderr and exit code 2. */
export async function runMain(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (err) {
    process.exitCode = reportError(err);
  }
}

export function reportError(err: unknown): number {
  if (err instanceof UserError) {
    process.stderr.write(`error: ${err.message}\n`);
    return err.exitCode;
  }
  const fsErr = describeFsError(err, (err as NodeJS.ErrnoException)?.path ?? 'file', 'complete the operation');
  if (fsErr) {
    process.stderr.write(`error: ${fsErr.message}\n`);
    return 2;
  }
  const message = err instanceof Error ? err.message : String(err);
  if (process.env.KDCACHE_DEBUG) process.stderr.write(`${(err as Error)?.stack ?? message}\n`);
  else process.stderr.write(`error: internal error: ${message.split('\n')[0]} (rerun with KDCACHE_DEBUG=1 for a stack trace and report it)\n`);
  return 1;
}
