// Every action asks first: a modal <dialog> naming what will happen, with Cancel and a confirm
// button. `ask()` resolves true only when the user confirms.
import { useRef, useState } from "preact/hooks";

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
    onError(err instanceof Error ? err.message : String(err));
  }
}
