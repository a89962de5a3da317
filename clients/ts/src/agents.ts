// The AgentService client with helpers: create with an automatic request_id, list as an async
// iterator over pages, and follow an agent's events until it ends.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { AgentStatus, type Agent } from "./gen/godel/v1/agent_pb.js";
import {
  AgentService,
  CreateAgentRequestSchema,
  type ListAgentsRequestSchema,
} from "./gen/godel/v1/agent_service_pb.js";
import type { Event } from "./gen/godel/v1/event_pb.js";
import type { Events } from "./events.js";
import { pages } from "./paging.js";

export type CreateAgentInit = MessageInitShape<typeof CreateAgentRequestSchema>;
export type ListAgentsInit = MessageInitShape<typeof ListAgentsRequestSchema>;
type CallOptions = { signal?: AbortSignal };

export interface AgentHelpers {
  /**
   * Creates an agent. A request without requestId gets a fresh one, so a retry after
   * UNAVAILABLE cannot create it twice; a config with a command and no runtime runs on the
   * "command" runtime.
   */
  create(request: CreateAgentInit, options?: CallOptions): Promise<Agent>;
  get(id: string, options?: CallOptions): Promise<Agent>;
  /** Every agent matching `request`'s filters, fetched page by page as you iterate. */
  list(request?: ListAgentsInit, options?: CallOptions): AsyncIterable<Agent>;
  /** The agent's events from its first one, live, until the event with which it ended. */
  follow(id: string, options?: CallOptions): AsyncIterable<Event>;
}

export type Agents = Client<typeof AgentService> & AgentHelpers;

/** Whether the agent is done for good: completed, killed, or failed with no retry to come. */
export function agentEnded(agent: Agent): boolean {
  if (agent.status === AgentStatus.COMPLETED || agent.status === AgentStatus.KILLED) return true;
  return agent.status === AgentStatus.FAILED && agent.completedAt !== undefined;
}

/** The events after which an agent may have ended (or begun again). */
const ENDING = ["agent:complete", "agent:kill", "agent:error", "agent:restart"];

export function agentHelpers(service: Client<typeof AgentService>, events: Events): AgentHelpers {
  const get = (id: string, options: CallOptions = {}) => service.getAgent({ id }, options);
  return {
    create(request, options = {}) {
      const message = create(CreateAgentRequestSchema, request);
      if (message.config && !message.config.runtime && message.config.command.length) message.config.runtime = "command";
      message.requestId ||= crypto.randomUUID();
      return service.createAgent(message, options);
    },
    get,
    list(request = {}, options = {}) {
      return pages(async (pageToken) => {
        const page = await service.listAgents({ ...request, pageToken }, options);
        return [page.agents, page.nextPageToken];
      });
    },
    async *follow(id, options = {}) {
      for await (const event of events.subscribe({ agentId: id, fromSequence: 0n }, options)) {
        yield event;
        if (!ENDING.includes(event.type)) continue;
        // Ended now, and no later ending event stored (a replay passes retried failures).
        if (!agentEnded(await get(id, options))) continue;
        const later = await events.queryEvents(
          { agentId: id, type: ENDING, afterSequence: event.sequence, pageSize: 1 },
          options,
        );
        if (later.events.length === 0) return;
      }
    },
  };
}
