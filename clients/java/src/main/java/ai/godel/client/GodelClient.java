package ai.godel.client;

import com.google.protobuf.Descriptors;
import godel.v1.AgentServiceGrpc;
import godel.v1.AuthServiceGrpc;
import godel.v1.BudgetServiceGrpc;
import godel.v1.ClusterServiceGrpc;
import godel.v1.EventServiceGrpc;
import godel.v1.IntentServiceGrpc;
import godel.v1.SystemServiceGrpc;
import godel.v1.TaskServiceGrpc;
import godel.v1.TeamServiceGrpc;
import godel.v1.WorkflowServiceGrpc;
import io.grpc.ChannelCredentials;
import io.grpc.ClientInterceptor;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.ServiceDescriptor;
import io.grpc.TlsChannelCredentials;
import io.grpc.protobuf.ProtoServiceDescriptorSupplier;
import io.grpc.stub.MetadataUtils;
import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.UnaryOperator;

/**
 * The Java client of Godel: one channel to the gateway (or a service), the API key or bearer
 * token on every call, retries of idempotent calls on UNAVAILABLE, and a client per service.
 *
 * <pre>{@code
 * try (GodelClient godel = GodelClient.builder("127.0.0.1:7373").apiKey(key).build()) {
 *   Agent agent = godel.agents().create(CreateAgentRequest.newBuilder().setTask("say hi")
 *       .setConfig(AgentConfig.newBuilder().addCommand("echo").addCommand("{task}")).build());
 *   for (Event event : godel.agents().follow(agent.getId())) System.out.println(event.getType());
 * }
 * }</pre>
 */
public final class GodelClient implements AutoCloseable {
  public static final String VERSION = "0.1.0";

  private final ManagedChannel channel;
  private final Agents agents;
  private final Events events;
  private final UnaryOperator<io.grpc.stub.AbstractStub<?>> configure;

  GodelClient(ManagedChannel channel, ClientInterceptor auth) {
    this.channel = channel;
    this.configure = stub -> auth == null ? stub : stub.withInterceptors(auth);
    this.events = new Events(stub(EventServiceGrpc.newBlockingStub(channel)));
    this.agents = new Agents(stub(AgentServiceGrpc.newBlockingStub(channel)), events);
  }

  @SuppressWarnings("unchecked")
  private <S extends io.grpc.stub.AbstractStub<S>> S stub(S stub) {
    return (S) configure.apply(stub);
  }

  /** A client of the gateway at {@code target} ("host:port"); plaintext unless {@link Builder#tls()}. */
  public static Builder builder(String target) {
    return new Builder(target);
  }

  public Agents agents() { return agents; }

  public Events events() { return events; }

  public TeamServiceGrpc.TeamServiceBlockingStub teams() { return stub(TeamServiceGrpc.newBlockingStub(channel)); }

  public WorkflowServiceGrpc.WorkflowServiceBlockingStub workflows() { return stub(WorkflowServiceGrpc.newBlockingStub(channel)); }

  public TaskServiceGrpc.TaskServiceBlockingStub tasks() { return stub(TaskServiceGrpc.newBlockingStub(channel)); }

  public BudgetServiceGrpc.BudgetServiceBlockingStub budgets() { return stub(BudgetServiceGrpc.newBlockingStub(channel)); }

  public IntentServiceGrpc.IntentServiceBlockingStub intent() { return stub(IntentServiceGrpc.newBlockingStub(channel)); }

  public ClusterServiceGrpc.ClusterServiceBlockingStub clusters() { return stub(ClusterServiceGrpc.newBlockingStub(channel)); }

  public AuthServiceGrpc.AuthServiceBlockingStub auth() { return stub(AuthServiceGrpc.newBlockingStub(channel)); }

  public SystemServiceGrpc.SystemServiceBlockingStub system() { return stub(SystemServiceGrpc.newBlockingStub(channel)); }

  /** The underlying channel. */
  public ManagedChannel channel() { return channel; }

  @Override
  public void close() {
    channel.shutdownNow();
    try {
      channel.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Whether a unary method may be sent again after UNAVAILABLE: reads and creates (request_id). */
  static boolean retryable(Descriptors.MethodDescriptor method) {
    if (method.isClientStreaming() || method.isServerStreaming()) return false;
    String name = method.getName();
    return name.startsWith("Get") || name.startsWith("List") || name.startsWith("Query")
        || method.getInputType().findFieldByName("request_id") != null;
  }

  /** The service config: a retry policy for every retryable method, from the descriptors. */
  static Map<String, Object> serviceConfig() {
    List<Object> names = new ArrayList<>();
    for (ServiceDescriptor service : List.of(
        AgentServiceGrpc.getServiceDescriptor(), EventServiceGrpc.getServiceDescriptor(),
        TeamServiceGrpc.getServiceDescriptor(), WorkflowServiceGrpc.getServiceDescriptor(),
        TaskServiceGrpc.getServiceDescriptor(), BudgetServiceGrpc.getServiceDescriptor(),
        IntentServiceGrpc.getServiceDescriptor(), ClusterServiceGrpc.getServiceDescriptor(),
        AuthServiceGrpc.getServiceDescriptor(), SystemServiceGrpc.getServiceDescriptor())) {
      Descriptors.ServiceDescriptor proto =
          ((ProtoServiceDescriptorSupplier) service.getSchemaDescriptor()).getServiceDescriptor();
      for (Descriptors.MethodDescriptor m : proto.getMethods()) {
        if (retryable(m)) names.add(Map.of("service", proto.getFullName(), "method", m.getName()));
      }
    }
    Map<String, Object> retry = Map.of(
        "maxAttempts", 5.0, "initialBackoff", "0.1s", "maxBackoff", "2s",
        "backoffMultiplier", 2.0, "retryableStatusCodes", List.of("UNAVAILABLE"));
    return Map.of("methodConfig", List.of(Map.of("name", names, "retryPolicy", retry)));
  }

  /** Options of a GodelClient. */
  public static final class Builder {
    private final String target;
    private final Metadata headers = new Metadata();
    private ChannelCredentials credentials = InsecureChannelCredentials.create();
    private boolean authenticated;

    private Builder(String target) {
      this.target = target;
    }

    /** Sends the API key (godel_sk_...) as x-api-key on every call. */
    public Builder apiKey(String key) {
      headers.put(Metadata.Key.of("x-api-key", Metadata.ASCII_STRING_MARSHALLER), key);
      authenticated = true;
      return this;
    }

    /** Sends "authorization: Bearer token" (a JWT or an API key) on every call. */
    public Builder bearerToken(String token) {
      headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
      authenticated = true;
      return this;
    }

    /** TLS, verifying the server with the system's roots. */
    public Builder tls() {
      credentials = TlsChannelCredentials.create();
      return this;
    }

    /** TLS with a private CA (PEM), and a client certificate and key for mutual TLS when not null. */
    public Builder tls(File caPem, File certPem, File keyPem) throws IOException {
      TlsChannelCredentials.Builder b = TlsChannelCredentials.newBuilder().trustManager(caPem);
      if (certPem != null) b.keyManager(certPem, keyPem);
      credentials = b.build();
      return this;
    }

    public GodelClient build() {
      ManagedChannelBuilder<?> b = Grpc.newChannelBuilder(target, credentials)
          .defaultServiceConfig(serviceConfig())
          .enableRetry();
      return new GodelClient(b.build(), authenticated ? MetadataUtils.newAttachHeadersInterceptor(headers) : null);
    }
  }
}
