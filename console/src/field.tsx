// A text input (or a password's, `secret`) bound to a piece of state.
export function Field(props: {
  name: string;
  value: string;
  set: (value: string) => void;
  placeholder?: string;
  secret?: boolean;
  autocomplete?: "off" | "username" | "current-password";
  required?: boolean;
}) {
  const common = {
    name: props.name,
    value: props.value,
    placeholder: props.placeholder,
    autocomplete: props.autocomplete,
    required: props.required,
    onInput: (e: { currentTarget: HTMLInputElement }) => props.set(e.currentTarget.value),
  };
  return props.secret ? <input type="password" {...common} /> : <input type="text" {...common} />;
}
