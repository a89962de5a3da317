package ai.godel.client;

import godel.v1.EventOuterClass.Event;
import godel.v1.EventServiceGrpc;
import godel.v1.EventServiceOuterClass.QueryEventsRequest;
import godel.v1.EventServiceOuterClass.QueryEventsResponse;
import godel.v1.EventServiceOuterClass.SubscribeEventsRequest;

/** The EventService: query pages, resuming subscriptions, and the generated stub ({@link #stub()}). */
public final class Events {
  private final EventServiceGrpc.EventServiceBlockingStub stub;

  Events(EventServiceGrpc.EventServiceBlockingStub stub) {
    this.stub = stub;
  }

  /** The generated blocking stub, for the calls this class does not wrap. */
  public EventServiceGrpc.EventServiceBlockingStub stub() {
    return stub;
  }

  /** Stored events matching the request, oldest first, fetched page by page as you iterate. */
  public Iterable<Event> query(QueryEventsRequest request) {
    return Pages.of(token -> {
      QueryEventsResponse page = stub.queryEvents(request.toBuilder().setPageToken(token).build());
      return new Pages.Page<>(page.getEventsList(), page.getNextPageToken());
    });
  }

  /** Follows the events matching the request live, resuming after a disconnect; close it when done. */
  public Subscription subscribe(SubscribeEventsRequest request) {
    return new Subscription(stub, request);
  }
}
