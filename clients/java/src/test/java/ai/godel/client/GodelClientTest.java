package ai.godel.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import godel.v1.AgentOuterClass.Agent;
import godel.v1.AgentServiceGrpc;
import godel.v1.AgentServiceOuterClass.CreateAgentRequest;
import godel.v1.EventOuterClass.Event;
import godel.v1.EventServiceGrpc;
import godel.v1.AgentServiceOuterClass.StreamEnd;
import godel.v1.EventServiceOuterClass.SubscribeEventsRequest;
import godel.v1.EventServiceOuterClass.SubscribeEventsResponse;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerInterceptors;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The wrapper on an in-process fake server: resume, typed errors, request ids, auth. */
class GodelClientTest {
  private Server server;
  private GodelClient client;
  private final List<Long> froms = new CopyOnWriteArrayList<>();
  private final List<String> keys = new CopyOnWriteArrayList<>();
  private final List<String> requestIds = new CopyOnWriteArrayList<>();

  private final EventServiceGrpc.EventServiceImplBase events = new EventServiceGrpc.EventServiceImplBase() {
    @Override
    public void subscribeEvents(SubscribeEventsRequest req, StreamObserver<SubscribeEventsResponse> out) {
      froms.add(req.getFromSequence());
      long from = req.getFromSequence();
      out.onNext(event(from + 1));
      if (froms.size() == 1) {
        out.onNext(event(from + 2));
        out.onError(Status.UNAVAILABLE.withDescription("event service restarting").asRuntimeException());
        return;
      }
      out.onNext(SubscribeEventsResponse.newBuilder().setEnd(StreamEnd.getDefaultInstance()).build());
      out.onCompleted();
    }
  };

  private final AgentServiceGrpc.AgentServiceImplBase agents = new AgentServiceGrpc.AgentServiceImplBase() {
    @Override
    public void createAgent(CreateAgentRequest req, StreamObserver<Agent> out) {
      requestIds.add(req.getRequestId());
      com.google.rpc.Status status = com.google.rpc.Status.newBuilder()
          .setCode(Status.Code.INVALID_ARGUMENT.value()).setMessage("bad request")
          .addDetails(Any.pack(ErrorInfo.newBuilder().setReason("INVALID_ARGUMENT").setDomain("godel").build()))
          .addDetails(Any.pack(BadRequest.newBuilder().addFieldViolations(
              BadRequest.FieldViolation.newBuilder().setField("task").setDescription("is required")).build()))
          .build();
      out.onError(StatusProto.toStatusRuntimeException(status));
    }
  };

  private static SubscribeEventsResponse event(long sequence) {
    return SubscribeEventsResponse.newBuilder()
        .setEvent(Event.newBuilder().setSequence(sequence).setType("agent:start")).build();
  }

  @BeforeEach
  void start() throws Exception {
    String name = InProcessServerBuilder.generateName();
    ServerInterceptor recordKey = new ServerInterceptor() {
      @Override
      public <Q, R> io.grpc.ServerCall.Listener<Q> interceptCall(
          io.grpc.ServerCall<Q, R> call, Metadata headers, io.grpc.ServerCallHandler<Q, R> next) {
        keys.add(headers.get(Metadata.Key.of("x-api-key", Metadata.ASCII_STRING_MARSHALLER)));
        return next.startCall(call, headers);
      }
    };
    server = InProcessServerBuilder.forName(name).directExecutor()
        .addService(ServerInterceptors.intercept(events, recordKey))
        .addService(ServerInterceptors.intercept(agents, recordKey))
        .build().start();
    Metadata headers = new Metadata();
    headers.put(Metadata.Key.of("x-api-key", Metadata.ASCII_STRING_MARSHALLER), "godel_sk_test");
    client = new GodelClient(InProcessChannelBuilder.forName(name).directExecutor().build(),
        MetadataUtils.newAttachHeadersInterceptor(headers));
  }

  @AfterEach
  void stop() {
    client.close();
    server.shutdownNow();
  }

  @Test
  void subscribeResumesAfterTheLastEvent() {
    List<Long> seen = new ArrayList<>();
    try (Subscription s = client.events().subscribe(SubscribeEventsRequest.newBuilder().setFromSequence(10).build())) {
      s.forEachRemaining(e -> seen.add(e.getSequence()));
    }
    assertEquals(List.of(11L, 12L, 13L), seen);
    assertEquals(List.of(10L, 12L), froms);
  }

  @Test
  void errorsAreTypedWithTheirDetails() {
    GodelException e = assertThrows(GodelException.class,
        () -> client.agents().create(CreateAgentRequest.getDefaultInstance()));
    assertInstanceOf(GodelException.InvalidArgument.class, e);
    assertEquals("INVALID_ARGUMENT", e.reason());
    assertEquals(List.of(new GodelException.FieldViolation("task", "is required")), e.fieldViolations());
    assertEquals(36, requestIds.get(0).length(), "a request_id is filled in");
    assertTrue(keys.stream().allMatch("godel_sk_test"::equals) && !keys.isEmpty(), "x-api-key is sent");
  }

  @Test
  void retriesCoverReadsAndCreatesOnly() {
    String config = GodelClient.serviceConfig().toString();
    assertTrue(config.contains("method=GetAgent") && config.contains("method=CreateAgent"), config);
    assertTrue(!config.contains("method=KillAgent") && !config.contains("method=SubscribeEvents"), config);
  }
}
