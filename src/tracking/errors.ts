/**
 * The one error type the run store throws for bad input on disk (corrupt Arrow streams, a
 * missing or invalid run.json, a schema mismatch on resume). Callers can catch it to skip a
 * damaged run without swallowing programming errors.
 */
export class RunStoreError extends Error {
  /** The file the problem was found in, when there is one. */
  readonly file: string | undefined;
  /** Byte offset of the problem inside `file`, when known. */
  readonly offset: number | undefined;

  constructor(message: string, options: { file?: string; offset?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "RunStoreError";
    this.file = options.file;
    this.offset = options.offset;
  }
}

/** Short text of an unknown thrown value, for wrapping into a RunStoreError message. */
export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
