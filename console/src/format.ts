// Display helpers: enum names, times, money.
import { AgentStatus, LifecycleState } from "@godel-ai/client";

type Stamp = { seconds: bigint; nanos: number } | undefined;

/** The lower-case name of a generated enum's value: enumName(TeamStatus, 2) === "active". */
export const enumName = (values: Record<number, string>, value: number): string =>
  (values[value] ?? "UNSPECIFIED").toLowerCase().replaceAll("_", " ");
export const statusName = (status: AgentStatus): string => enumName(AgentStatus, status);
export const stateName = (state: LifecycleState): string => enumName(LifecycleState, state);

export function time(stamp: Stamp): string {
  if (!stamp) return "";
  return new Date(Number(stamp.seconds) * 1000 + Math.floor(stamp.nanos / 1e6)).toLocaleTimeString();
}

export const usd = (value: number): string => `$${value.toFixed(value < 1 ? 4 : 2)}`;

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export const capital = (word: string): string => word.charAt(0).toUpperCase() + word.slice(1);
