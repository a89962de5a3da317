// Creates an agent over plain gRPC (HTTP/2 without TLS) and reads it back.
//
//   GODEL_ADDR=host:port GODEL_API_KEY=... npm run --silent create-agent
//
// Calls godel.v1.AgentService/CreateAgent (task "hello from ts", label
// "ts-client") with header x-api-key, then GetAgent with the returned id, and
// prints the agent as one line of proto3 JSON (camelCase names, enums as strings,
// zero scalars/enums/lists included, unset messages omitted) on stdout. Any
// failure goes to stderr, exit code 1.
//
// @godel/gen is a symlink (file:../../gen/ts) shipping .ts sources; the script runs
// under `node --preserve-symlinks --import tsx` (and tsconfig has preserveSymlinks)
// so the generated files resolve @bufbuild/protobuf from this package's
// node_modules: `npm ci` here is enough, gen/ts needs no install of its own.
import { create, createRegistry, toJsonString } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentSchema } from "@godel/gen/godel/v1/agent_pb";
import { AgentService } from "@godel/gen/godel/v1/agent_service_pb";
import { file_google_rpc_error_details } from "@godel/gen/google/rpc/error_details_pb";

async function main(): Promise<void> {
  const addr = process.env["GODEL_ADDR"];
  if (!addr) {
    throw new Error("GODEL_ADDR (host:port) is not set");
  }
  const apiKey = process.env["GODEL_API_KEY"] ?? "";
  const headers: Record<string, string> = apiKey ? { "x-api-key": apiKey } : {};

  const transport = createGrpcTransport({ baseUrl: `http://${addr}` });
  const client = createClient(AgentService, transport);
  const signal = AbortSignal.timeout(30_000);

  let step = "CreateAgent";
  try {
    const created = await client.createAgent(
      { task: "hello from ts", label: "ts-client" },
      { headers, signal },
    );
    step = `GetAgent "${created.id}"`;
    const agent = await client.getAgent({ id: created.id }, { headers, signal });
    process.stdout.write(toJsonString(AgentSchema, agent, { alwaysEmitImplicit: true }) + "\n");
  } catch (err) {
    throw new Error(`${step}: ${describe(err)}`, { cause: err });
  }
}

// Same shape as grpc-go's status errors: "rpc error: code = Unauthenticated desc = ...",
// followed by any google.rpc error details (ErrorInfo, BadRequest, ...) as JSON.
const detailTypes = createRegistry(file_google_rpc_error_details);

function describe(err: unknown): string {
  const ce = ConnectError.from(err);
  const lines = [`rpc error: code = ${Code[ce.code]} desc = ${ce.rawMessage}`];
  for (const d of ce.details) {
    if (!("type" in d)) continue; // only details received from the server
    const any = create(AnySchema, { typeUrl: `type.googleapis.com/${d.type}`, value: d.value });
    let json: string;
    try {
      json = toJsonString(AnySchema, any, { registry: detailTypes });
    } catch {
      json = JSON.stringify({ "@type": any.typeUrl });
    }
    lines.push(`detail: ${json}`);
  }
  return lines.join("\n");
}

main().catch((err: unknown) => {
  process.stderr.write(`create-agent: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
