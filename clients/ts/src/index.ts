/**
 * The TypeScript client of Godel, for Node 20+ and browsers (gRPC-Web through the gateway).
 *
 * ```ts
 * import { GodelClient } from "@godel-ai/client";
 * const godel = new GodelClient({ baseUrl: "http://127.0.0.1:7373", apiKey: process.env.GODEL_API_KEY });
 * const agent = await godel.agents.create({ task: "say hi", config: { command: ["echo", "{task}"] } });
 * for await (const event of godel.agents.follow(agent.id)) console.log(event.sequence, event.type);
 * ```
 *
 * The generated messages and services are under "@godel-ai/client/gen/godel/v1/<file>_pb".
 */
export { GodelClient, VERSION, interceptors, type GodelClientOptions } from "./client.js";
export { agentEnded, type Agents, type AgentHelpers, type CreateAgentInit, type ListAgentsInit } from "./agents.js";
export { type Events, type EventHelpers, type QueryEventsInit, type SubscribeEventsInit } from "./events.js";
export * from "./errors.js";
export { AgentStatus, LifecycleState, type Agent, type AgentConfig } from "./gen/godel/v1/agent_pb.js";
export type { Event } from "./gen/godel/v1/event_pb.js";
