package ai.godel.client;

import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.function.Function;

/** Page iteration: the items of each page, the next page (by its token) fetched only when needed. */
final class Pages<T> implements Iterator<T> {
  /** One page: its items and the token of the next ("" at the end). */
  record Page<T>(List<T> items, String next) {}

  private final Function<String, Page<T>> fetch;
  private Iterator<T> items = List.<T>of().iterator();
  private String token = "";
  private boolean last;

  Pages(Function<String, Page<T>> fetch) {
    this.fetch = fetch;
  }

  static <T> Iterable<T> of(Function<String, Page<T>> fetch) {
    return () -> new Pages<>(fetch);
  }

  @Override
  public boolean hasNext() {
    while (!items.hasNext() && !last) {
      Page<T> page = GodelException.call(() -> fetch.apply(token));
      items = page.items().iterator();
      token = page.next();
      last = token.isEmpty();
    }
    return items.hasNext();
  }

  @Override
  public T next() {
    if (!hasNext()) throw new NoSuchElementException();
    return items.next();
  }
}
