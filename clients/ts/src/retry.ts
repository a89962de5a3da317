// Retries of idempotent calls on UNAVAILABLE, with jittered exponential backoff: reads (Get*,
// List*, Query*) and calls whose request has a request_id (creates; the client fills it in).
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

export function retryable(method: DescMethod): boolean {
  if (method.methodKind !== "unary") return false;
  if (/^(Get|List|Query)/.test(method.name)) return true;
  return method.input.fields.some((f) => f.name === "request_id");
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** A delay drawn from [d/2, d] with d = min(max, start * 2^attempt). */
export function backoff(attempt: number, startMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, startMs * 2 ** Math.min(attempt, 20));
  return ceiling / 2 + (Math.random() * ceiling) / 2;
}

export function retries(attempts: number): Interceptor {
  return (next) => async (req) => {
    if (req.stream || !retryable(req.method)) return next(req);
    for (let attempt = 0; ; attempt++) {
      try {
        return await next(req);
      } catch (err) {
        if (attempt + 1 >= attempts || ConnectError.from(err).code !== Code.Unavailable) throw err;
        await sleep(backoff(attempt, 100, 2000), req.signal);
      }
    }
  };
}
