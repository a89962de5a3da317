// Page iteration: yields the items of each page, fetching the next page (by its token) only
// when the previous one has been consumed.
export async function* pages<T>(fetch: (pageToken: string) => Promise<[T[], string]>): AsyncGenerator<T> {
  let token = "";
  for (;;) {
    const [items, next] = await fetch(token);
    yield* items;
    if (!next) return;
    token = next;
  }
}
