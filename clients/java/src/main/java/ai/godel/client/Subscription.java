package ai.godel.client;

import com.google.rpc.ErrorInfo;
import godel.v1.EventOuterClass.Event;
import godel.v1.EventServiceGrpc;
import godel.v1.EventServiceOuterClass.SubscribeEventsRequest;
import godel.v1.EventServiceOuterClass.SubscribeEventsResponse;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;

/**
 * A live event subscription: the events as they are published (heartbeats skipped). When the
 * stream breaks it reconnects with backoff and resumes after the last event it delivered
 * (from_sequence = that event's sequence), so no event is lost or repeated. It ends when the
 * server ends the stream, when closed, or by throwing a GodelException a reconnect cannot help.
 */
public final class Subscription implements Iterator<Event>, AutoCloseable {
  private static final Set<Status.Code> RESUMABLE =
      Set.of(Status.Code.UNAVAILABLE, Status.Code.INTERNAL, Status.Code.UNKNOWN, Status.Code.ABORTED, Status.Code.RESOURCE_EXHAUSTED);

  private final EventServiceGrpc.EventServiceBlockingStub stub;
  private final SubscribeEventsRequest.Builder request;
  private Context.CancellableContext context;
  private Iterator<SubscribeEventsResponse> stream;
  private Event next;
  private boolean done;
  private int attempt;

  Subscription(EventServiceGrpc.EventServiceBlockingStub stub, SubscribeEventsRequest request) {
    this.stub = stub;
    this.request = request.toBuilder();
  }

  @Override
  public boolean hasNext() {
    while (next == null && !done) {
      try {
        if (stream == null) open();
        if (!stream.hasNext()) { // no StreamEnd: a proxy cut the stream; go on from where it was
          reconnect();
          continue;
        }
        SubscribeEventsResponse item = stream.next();
        switch (item.getItemCase()) {
          case EVENT -> {
            next = item.getEvent();
            request.setFromSequence(next.getSequence());
            attempt = 0;
          }
          case END -> {
            close();
            if (item.getEnd().getCode() != 0) {
              throw GodelException.of(Status.fromCodeValue(item.getEnd().getCode()).getCode(),
                  item.getEnd().getMessage(), ErrorInfo.getDefaultInstance(), List.of(), null);
            }
          }
          default -> { } // heartbeats
        }
      } catch (StatusRuntimeException e) {
        GodelException error = GodelException.from(e);
        if (done || !RESUMABLE.contains(error.code())) {
          close();
          throw error;
        }
        reconnect();
      }
    }
    return next != null;
  }

  @Override
  public Event next() {
    if (!hasNext()) throw new NoSuchElementException();
    Event event = next;
    next = null;
    return event;
  }

  private void open() {
    context = Context.current().withCancellation();
    Context previous = context.attach();
    try {
      stream = stub.subscribeEvents(request.build());
    } finally {
      context.detach(previous);
    }
  }

  private void reconnect() {
    context.cancel(null);
    stream = null;
    long ceiling = Math.min(5000, 100L << Math.min(attempt++, 20));
    try {
      Thread.sleep(ceiling / 2 + ThreadLocalRandom.current().nextLong(ceiling / 2 + 1));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      close();
    }
  }

  /** Cancels the call; the iterator ends. */
  @Override
  public void close() {
    done = true;
    if (context != null) context.cancel(null);
  }
}
