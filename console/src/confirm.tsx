// Every action asks first: a modal <dialog> naming what will happen, with Cancel and a confirm
// button. `ask()` resolves true only when the user confirms. A form that creates something asks
// the same way and shows below itself why the API refused it (the fields an INVALID_ARGUMENT names).
import type { ComponentChildren } from "preact";
import { useRef, useState } from "preact/hooks";
import { errorText } from "./format.js";

export interface Ask {
  (question: string, verb: string): Promise<boolean>;
}

export function useConfirm(): [Ask, preact.JSX.Element] {
  const dialog = useRef<HTMLDialogElement>(null);
  const [pending, setPending] = useState<{ question: string; verb: string; answer: (ok: boolean) => void } | null>(
    null,
  );
  const ask: Ask = (question, verb) =>
    new Promise<boolean>((answer) => {
      setPending({ question, verb, answer });
      queueMicrotask(() => dialog.current?.showModal());
    });
  const close = (ok: boolean) => {
    dialog.current?.close();
    pending?.answer(ok);
    setPending(null);
  };
  const element = (
    <dialog ref={dialog} class="confirm" onCancel={() => close(false)}>
      <p>{pending?.question}</p>
      <div class="buttons">
        <button type="button" onClick={() => close(false)}>
          Cancel
        </button>
        <button type="button" class="danger" data-confirm onClick={() => close(true)}>
          {pending?.verb}
        </button>
      </div>
    </dialog>
  );
  return [ask, element];
}

/** Asks, then runs `action`; `onDone` after it succeeded, `onError` with why it failed. */
export async function confirmed(
  ask: Ask,
  question: string,
  verb: string,
  action: () => Promise<unknown>,
  onDone: () => void,
  onError: (message: string) => void,
): Promise<void> {
  if (!(await ask(question, verb))) return;
  try {
    await action();
    onDone();
  } catch (err) {
    onError(errorText(err));
  }
}

/** A form whose submit asks `question()` (nothing happens when it returns ""), then runs `action`. */
export function ConfirmedForm(props: {
  name: string;
  ask: Ask;
  verb: string;
  label: string;
  question: () => string;
  action: () => Promise<unknown>;
  onDone: () => void;
  children: ComponentChildren;
}) {
  const [error, setError] = useState("");
  const submit = async (e: Event) => {
    e.preventDefault();
    const question = props.question();
    if (!question) return;
    setError("");
    await confirmed(props.ask, question, props.verb, props.action, props.onDone, setError);
  };
  return (
    <form class={props.name} onSubmit={submit}>
      {props.children}
      <button type="submit" data-action={props.verb}>
        {props.label}
      </button>
      {error && (
        <p class="error" data-error-for={props.name}>
          {error}
        </p>
      )}
    </form>
  );
}
