// Lists follow next_page_token: a view shows as many pages as the user asked for (the "more"
// button adds one), and its live reloads fetch that many again.
import { useState } from "preact/hooks";

/** A page of a List* call: its items and the token of the next page ("" after the last). */
export type Page<T> = (pageToken: string) => Promise<[T[], string]>;

export const PAGE_SIZE = 100;

export interface Paged<T> {
  items: T[];
  /** Whether a page follows the ones shown. */
  next: string;
  /** How many pages are shown: a dependency of the view's live reload. */
  count: number;
  /** Fetches the first `count` pages. */
  load: () => Promise<void>;
  more: () => void;
}

export function usePaged<T>(page: Page<T>): Paged<T> {
  const [count, setCount] = useState(1);
  const [shown, setShown] = useState<{ items: T[]; next: string }>({ items: [], next: "" });
  const load = async () => {
    const items: T[] = [];
    let token = "";
    for (let i = 0; i < count; i++) {
      const [found, next] = await page(token);
      items.push(...found);
      token = next;
      if (!next) break;
    }
    setShown({ items, next: token });
  };
  return { ...shown, count, load, more: () => setCount((n) => n + 1) };
}

export function More<T>(props: { list: string; paged: Paged<T> }) {
  if (!props.paged.next) return null;
  return (
    <button type="button" class="more" data-more={props.list} onClick={props.paged.more}>
      more {props.list}
    </button>
  );
}
