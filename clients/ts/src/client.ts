// GodelClient: one transport (gRPC-Web by default, through the gateway's grpc_web filter, so
// the same code runs in browsers and Node 20+), authentication on every call, retries of
// idempotent calls, typed errors, and a client per service.
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AgentService } from "./gen/godel/v1/agent_service_pb.js";
import { AuthService } from "./gen/godel/v1/auth_service_pb.js";
import { BudgetService } from "./gen/godel/v1/budget_service_pb.js";
import { ClusterService } from "./gen/godel/v1/cluster_service_pb.js";
import { EventService } from "./gen/godel/v1/event_service_pb.js";
import { IntentService } from "./gen/godel/v1/intent_service_pb.js";
import { SystemService } from "./gen/godel/v1/system_service_pb.js";
import { TaskService } from "./gen/godel/v1/task_service_pb.js";
import { TeamService } from "./gen/godel/v1/team_service_pb.js";
import { WorkflowService } from "./gen/godel/v1/workflow_service_pb.js";
import { agentHelpers, type Agents } from "./agents.js";
import { typedErrors } from "./errors.js";
import { eventHelpers, type Events } from "./events.js";
import { retries } from "./retry.js";

export const VERSION = "0.1.0";

export interface GodelClientOptions {
  /** The gateway, e.g. "http://127.0.0.1:7373" or "https://godel.example.com" (the default is
   * the local gateway). Ignored when `transport` is given. */
  baseUrl?: string;
  /** An API key (godel_sk_...), sent as x-api-key. */
  apiKey?: string;
  /** A JWT or API key, sent as "authorization: Bearer ...". */
  bearerToken?: string;
  /** Another transport, e.g. createGrpcTransport from @connectrpc/connect-node for native gRPC
   * (pass `interceptors` from this package's `interceptors()` to keep auth, retries and
   * typed errors). */
  transport?: Transport;
  /** Attempts of an idempotent call on UNAVAILABLE (default 5; 1 = no retry). */
  attempts?: number;
}

/** The interceptors a GodelClient's transport uses: typed errors, retries, authentication. */
export function interceptors(options: GodelClientOptions = {}): Interceptor[] {
  const auth: Interceptor = (next) => async (req) => {
    if (options.apiKey) req.header.set("x-api-key", options.apiKey);
    if (options.bearerToken) req.header.set("authorization", `Bearer ${options.bearerToken}`);
    return next(req);
  };
  return [typedErrors, retries(options.attempts ?? 5), auth];
}

export class GodelClient {
  readonly transport: Transport;
  readonly agents: Agents;
  readonly events: Events;
  readonly teams: Client<typeof TeamService>;
  readonly workflows: Client<typeof WorkflowService>;
  readonly tasks: Client<typeof TaskService>;
  readonly budgets: Client<typeof BudgetService>;
  readonly intent: Client<typeof IntentService>;
  readonly clusters: Client<typeof ClusterService>;
  readonly auth: Client<typeof AuthService>;
  readonly system: Client<typeof SystemService>;

  constructor(options: GodelClientOptions = {}) {
    this.transport =
      options.transport ??
      createGrpcWebTransport({
        baseUrl: options.baseUrl ?? "http://127.0.0.1:7373",
        interceptors: interceptors(options),
      });
    const events = createClient(EventService, this.transport);
    this.events = Object.assign(events, eventHelpers(events));
    const agents = createClient(AgentService, this.transport);
    this.agents = Object.assign(agents, agentHelpers(agents, this.events));
    this.teams = createClient(TeamService, this.transport);
    this.workflows = createClient(WorkflowService, this.transport);
    this.tasks = createClient(TaskService, this.transport);
    this.budgets = createClient(BudgetService, this.transport);
    this.intent = createClient(IntentService, this.transport);
    this.clusters = createClient(ClusterService, this.transport);
    this.auth = createClient(AuthService, this.transport);
    this.system = createClient(SystemService, this.transport);
  }
}
