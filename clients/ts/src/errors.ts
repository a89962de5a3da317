// Typed errors: every failed call becomes a GodelError (a subclass per gRPC code) carrying the
// details the server sent in google.rpc.Status: ErrorInfo's reason, domain and metadata, and
// BadRequest's field violations.
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";

export { Code };

/** One bad field of a request and what is wrong with it. */
export interface FieldViolation {
  field: string;
  description: string;
}

/**
 * A failed call: its gRPC code and message and the server's error details. It is a
 * ConnectError (so Connect passes it through unchanged and `findDetails` works); test the kind
 * with `instanceof NotFoundError` and friends, or compare `code`.
 */
export class GodelError extends ConnectError {
  /** ErrorInfo.reason, e.g. "LAST_ADMIN_KEY" ("" when the server sent none). */
  readonly reason: string;
  readonly domain: string;
  readonly errorMetadata: Readonly<Record<string, string>>;
  /** BadRequest field violations, e.g. [{field: "task", description: "is required"}]. */
  readonly fieldViolations: readonly FieldViolation[];

  constructor(
    code: Code,
    rawMessage: string,
    details: { reason?: string; domain?: string; metadata?: Record<string, string>; fieldViolations?: FieldViolation[] } = {},
    cause?: ConnectError,
  ) {
    super(rawMessage, code, cause?.metadata, undefined, cause);
    this.details = cause?.details ?? [];
    this.reason = details.reason ?? "";
    this.domain = details.domain ?? "";
    this.errorMetadata = details.metadata ?? {};
    this.fieldViolations = details.fieldViolations ?? [];
  }

  // ConnectError answers instanceof by its name; the kinds below need the prototype chain.
  static override [Symbol.hasInstance](value: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }
}

export class InvalidArgumentError extends GodelError {}
export class UnauthenticatedError extends GodelError {}
export class PermissionDeniedError extends GodelError {}
export class NotFoundError extends GodelError {}
export class AlreadyExistsError extends GodelError {}
export class FailedPreconditionError extends GodelError {}
export class AbortedError extends GodelError {}
export class ResourceExhaustedError extends GodelError {}
export class UnimplementedError extends GodelError {}
export class UnavailableError extends GodelError {}
export class DeadlineExceededError extends GodelError {}

const byCode = new Map<Code, typeof GodelError>([
  [Code.InvalidArgument, InvalidArgumentError],
  [Code.Unauthenticated, UnauthenticatedError],
  [Code.PermissionDenied, PermissionDeniedError],
  [Code.NotFound, NotFoundError],
  [Code.AlreadyExists, AlreadyExistsError],
  [Code.FailedPrecondition, FailedPreconditionError],
  [Code.Aborted, AbortedError],
  [Code.ResourceExhausted, ResourceExhaustedError],
  [Code.Unimplemented, UnimplementedError],
  [Code.Unavailable, UnavailableError],
  [Code.DeadlineExceeded, DeadlineExceededError],
]);

/** The GodelError of a code and message (for errors that arrive in-band, e.g. StreamEnd). */
export function errorOf(code: Code, message: string): GodelError {
  const Kind = byCode.get(code) ?? GodelError;
  return new Kind(code, message);
}

/** Any error of a call as a GodelError (an aborted call: code Canceled). */
export function toGodelError(err: unknown): GodelError {
  if (err instanceof GodelError) return err;
  const ce = ConnectError.from(err);
  const info = ce.findDetails(ErrorInfoSchema)[0];
  const bad = ce.findDetails(BadRequestSchema)[0];
  const Kind = byCode.get(ce.code) ?? GodelError;
  return new Kind(
    ce.code,
    ce.rawMessage,
    {
      reason: info?.reason,
      domain: info?.domain,
      metadata: info?.metadata,
      fieldViolations: bad?.fieldViolations.map((v) => ({ field: v.field, description: v.description })),
    },
    ce,
  );
}

/** Interceptor that turns the errors of unary calls and of streams into GodelErrors. */
export const typedErrors: Interceptor = (next) => async (req) => {
  let res;
  try {
    res = await next(req);
  } catch (err) {
    throw toGodelError(err);
  }
  if (!res.stream) return res;
  const messages = res.message;
  return {
    ...res,
    message: (async function* () {
      try {
        yield* messages;
      } catch (err) {
        throw toGodelError(err);
      }
    })(),
  };
};
