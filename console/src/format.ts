// Display helpers: enum names, times, money.
import { GodelError, LifecycleState } from "@godel-ai/client";

type Stamp = { seconds: bigint; nanos: number } | undefined;

/** The lower-case name of a generated enum's value: enumName(TeamStatus, 2) === "active". */
export const enumName = (values: Record<number, string>, value: number): string =>
  (values[value] ?? "UNSPECIFIED").toLowerCase().replaceAll("_", " ");
export const stateName = (state: LifecycleState): string => enumName(LifecycleState, state);

export function time(stamp: Stamp): string {
  if (!stamp) return "";
  return new Date(Number(stamp.seconds) * 1000 + Math.floor(stamp.nanos / 1e6)).toLocaleTimeString();
}

export const usd = (value: number): string => `$${value.toFixed(value < 1 ? 4 : 2)}`;

/** Why a call failed, for people: an INVALID_ARGUMENT names each bad field ("total_budget: must
 * be a finite number greater than 0"); other errors give the server's message. */
export function errorText(err: unknown): string {
  if (err instanceof GodelError) {
    if (err.fieldViolations.length) return err.fieldViolations.map((v) => `${v.field}: ${v.description}`).join("; ");
    return err.rawMessage;
  }
  return err instanceof Error ? err.message : String(err);
}

export const capital = (word: string): string => word.charAt(0).toUpperCase() + word.slice(1);
