// A user's first program with the Java client, in a fresh Maven project that got the client
// from the local repository: it creates an agent that commits, pages through the agents until
// it finds it, follows its events to the end, and meets a 400 and a 401. It prints one JSON
// object (what it saw) on stdout.
import ai.godel.client.GodelClient;
import ai.godel.client.GodelException;
import godel.v1.AgentOuterClass.Agent;
import godel.v1.AgentOuterClass.AgentConfig;
import godel.v1.AgentServiceOuterClass.CreateAgentRequest;
import godel.v1.AgentServiceOuterClass.ListAgentsRequest;
import godel.v1.EventOuterClass.Event;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;

public class FirstAgent {
  public static void main(String[] args) {
    String addr = System.getenv("GODEL_ADDR");
    try (GodelClient godel = GodelClient.builder(addr).apiKey(System.getenv("GODEL_API_KEY")).build()) {
      Agent agent = godel.agents().create(CreateAgentRequest.newBuilder()
          .setTask("hello from the java client").setLabel("java-first-agent")
          .setConfig(AgentConfig.newBuilder().addCommand("sh").addCommand("-c")
              .addCommand("echo java > java.txt && git add java.txt && git commit -qm java"))
          .build());

      int paged = 0;
      boolean found = false;
      for (Agent a : godel.agents().list(ListAgentsRequest.newBuilder().setPageSize(2).setLabel("java-first-agent").build())) {
        paged++;
        found |= a.getId().equals(agent.getId());
      }

      List<String> events = new ArrayList<>();
      List<Long> sequences = new ArrayList<>();
      for (Event event : godel.agents().follow(agent.getId())) {
        events.add(event.getType());
        sequences.add(event.getSequence());
      }
      Agent done = godel.agents().get(agent.getId());

      boolean invalidArgument = false;
      List<String> violations = List.of();
      try {
        godel.agents().create(CreateAgentRequest.newBuilder().setTask("").build());
      } catch (GodelException.InvalidArgument e) {
        invalidArgument = true;
        violations = e.fieldViolations().stream().map(GodelException.FieldViolation::field).toList();
      }

      boolean unauthenticated = false;
      try (GodelClient stranger = GodelClient.builder(addr).apiKey("godel_sk_not-a-real-key-000000000000").build()) {
        stranger.agents().get(agent.getId());
      } catch (GodelException.Unauthenticated e) {
        unauthenticated = true;
      }

      System.out.println("{\"agentId\": " + quote(agent.getId())
          + ", \"paged\": " + paged + ", \"found\": " + found
          + ", \"events\": " + strings(events)
          + ", \"sequences\": " + sequences
          + ", \"status\": " + quote(done.getStatus().name())
          + ", \"commits\": " + strings(done.getCommitsList())
          + ", \"invalidArgument\": " + invalidArgument
          + ", \"violations\": " + strings(violations)
          + ", \"unauthenticated\": " + unauthenticated + "}");
    }
  }

  private static String quote(String s) {
    return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
  }

  private static String strings(List<String> items) {
    return items.stream().map(FirstAgent::quote).collect(Collectors.joining(", ", "[", "]"));
  }
}
