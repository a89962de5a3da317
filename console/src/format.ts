// Display helpers: enum names, times, money.
import { AgentStatus, LifecycleState } from "@godel-ai/client";

type Stamp = { seconds: bigint; nanos: number } | undefined;

export const statusName = (status: AgentStatus): string => (AgentStatus[status] ?? "UNSPECIFIED").toLowerCase();
export const stateName = (state: LifecycleState): string => (LifecycleState[state] ?? "UNSPECIFIED").toLowerCase();

export function time(stamp: Stamp): string {
  if (!stamp) return "";
  return new Date(Number(stamp.seconds) * 1000 + Math.floor(stamp.nanos / 1e6)).toLocaleTimeString();
}

export const usd = (value: number): string => `$${value.toFixed(value < 1 ? 4 : 2)}`;

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
