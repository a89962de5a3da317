// An object's status as a badge: the lower-case enum name, styled by it (style.css .status.*),
// with data-status for tests and scripts.
import { enumName } from "./format.js";

export function StatusBadge(props: { values: Record<number, string>; value: number }) {
  const name = enumName(props.values, props.value);
  return (
    <span class={`status ${name}`} data-status={name}>
      {name}
    </span>
  );
}
