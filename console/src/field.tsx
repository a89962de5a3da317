// Form inputs bound to a piece of state: a text input (or a password's, `secret`; a textarea,
// `lines`), and a choice among a generated enum's values.
import { enumName } from "./format.js";

type Input = { currentTarget: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement };

export function Field(props: {
  name: string;
  value: string;
  set: (value: string) => void;
  placeholder?: string;
  secret?: boolean;
  lines?: number;
  autocomplete?: "off" | "username" | "current-password";
  required?: boolean;
}) {
  const common = {
    name: props.name,
    value: props.value,
    placeholder: props.placeholder,
    required: props.required,
    onInput: (e: Input) => props.set(e.currentTarget.value),
  };
  if (props.lines) return <textarea rows={props.lines} {...common} />;
  if (props.secret) return <input type="password" autocomplete={props.autocomplete} {...common} />;
  return <input type="text" autocomplete={props.autocomplete} {...common} />;
}

/** One of an enum's values other than UNSPECIFIED (0), shown by name. */
export function Choice(props: { name: string; values: Record<number, string>; value: number; set: (value: number) => void }) {
  const options = Object.keys(props.values)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
  return (
    <select name={props.name} value={String(props.value)} onInput={(e: Input) => props.set(Number(e.currentTarget.value))}>
      {options.map((n) => (
        <option value={String(n)}>{enumName(props.values, n)}</option>
      ))}
    </select>
  );
}
