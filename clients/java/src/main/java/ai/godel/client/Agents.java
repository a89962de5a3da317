package ai.godel.client;

import godel.v1.AgentOuterClass.Agent;
import godel.v1.AgentOuterClass.AgentStatus;
import godel.v1.AgentServiceGrpc;
import godel.v1.AgentServiceOuterClass.CreateAgentRequest;
import godel.v1.AgentServiceOuterClass.GetAgentRequest;
import godel.v1.AgentServiceOuterClass.ListAgentsRequest;
import godel.v1.AgentServiceOuterClass.ListAgentsResponse;
import godel.v1.EventOuterClass.Event;
import godel.v1.EventServiceOuterClass.QueryEventsRequest;
import godel.v1.EventServiceOuterClass.SubscribeEventsRequest;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.UUID;

/** The AgentService: create, get, list (pages), follow, and the generated stub ({@link #stub()}). */
public final class Agents {
  /** The events after which an agent may have ended (or begun again). */
  private static final List<String> ENDING = List.of("agent:complete", "agent:kill", "agent:error", "agent:restart");

  private final AgentServiceGrpc.AgentServiceBlockingStub stub;
  private final Events events;

  Agents(AgentServiceGrpc.AgentServiceBlockingStub stub, Events events) {
    this.stub = stub;
    this.events = events;
  }

  /** The generated blocking stub, for the calls this class does not wrap. */
  public AgentServiceGrpc.AgentServiceBlockingStub stub() {
    return stub;
  }

  /**
   * Creates an agent. A request without a request_id gets a fresh one, so a retry after
   * UNAVAILABLE cannot create it twice; a config with a command and no runtime runs on the
   * "command" runtime.
   */
  public Agent create(CreateAgentRequest request) {
    CreateAgentRequest.Builder b = request.toBuilder();
    if (b.getRequestId().isEmpty()) b.setRequestId(UUID.randomUUID().toString());
    if (b.hasConfig() && b.getConfig().getRuntime().isEmpty() && b.getConfig().getCommandCount() > 0) {
      b.getConfigBuilder().setRuntime("command");
    }
    return GodelException.call(() -> stub.createAgent(b.build()));
  }

  public Agent get(String id) {
    return GodelException.call(() -> stub.getAgent(GetAgentRequest.newBuilder().setId(id).build()));
  }

  /** Every agent matching the request's filters, fetched page by page as you iterate. */
  public Iterable<Agent> list(ListAgentsRequest request) {
    return Pages.of(token -> {
      ListAgentsResponse page = stub.listAgents(request.toBuilder().setPageToken(token).build());
      return new Pages.Page<>(page.getAgentsList(), page.getNextPageToken());
    });
  }

  /** Whether the agent is done for good: completed, killed, or failed with no retry to come. */
  public static boolean ended(Agent agent) {
    return agent.getStatus() == AgentStatus.AGENT_STATUS_COMPLETED
        || agent.getStatus() == AgentStatus.AGENT_STATUS_KILLED
        || (agent.getStatus() == AgentStatus.AGENT_STATUS_FAILED && agent.hasCompletedAt());
  }

  /** The agent's events from its first one, live, until the event with which it ended. */
  public Iterable<Event> follow(String id) {
    return () -> new Iterator<>() {
      private final Subscription subscription =
          events.subscribe(SubscribeEventsRequest.newBuilder().setAgentId(id).setFromSequence(0).build());
      private boolean over;

      @Override
      public boolean hasNext() {
        if (over || !subscription.hasNext()) {
          subscription.close();
          return false;
        }
        return true;
      }

      @Override
      public Event next() {
        if (!hasNext()) throw new NoSuchElementException();
        Event event = subscription.next();
        over = ENDING.contains(event.getType()) && lastEnding(id, event.getSequence());
        return event;
      }
    };
  }

  /** Ended now, and no later ending event stored (a replay passes retried failures). */
  private boolean lastEnding(String id, long sequence) {
    if (!ended(get(id))) return false;
    QueryEventsRequest later = QueryEventsRequest.newBuilder()
        .setAgentId(id).addAllType(ENDING).setAfterSequence(sequence).setPageSize(1).build();
    return GodelException.call(() -> events.stub().queryEvents(later)).getEventsCount() == 0;
  }
}
