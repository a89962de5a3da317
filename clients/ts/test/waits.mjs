// Waiting on a condition in the worker tests (no fixed sleeps: the machine may be loaded).

export const DEADLINE_MS = 15_000;

/** The condition's first truthy value, polled every 20 ms; throws after `timeoutMs`. */
export async function waitFor(condition, what, timeoutMs = DEADLINE_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((ok) => setTimeout(ok, 20));
  }
}
