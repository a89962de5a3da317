// Unit tests of the built package (dist/) on Connect's in-memory router transport: subscriptions
// resume after the last event, errors are typed with their details, creates get a request_id.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { GodelClient, InvalidArgumentError, NotFoundError, interceptors } from "../dist/index.js";
import { AgentService } from "../dist/gen/godel/v1/agent_service_pb.js";
import { EventService } from "../dist/gen/godel/v1/event_service_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../dist/gen/google/rpc/error_details_pb.js";

function client(routes) {
  const transport = createRouterTransport(routes, { transport: { interceptors: interceptors({ apiKey: "godel_sk_test" }) } });
  return new GodelClient({ transport });
}

test("subscribe resumes after the last event it delivered", async () => {
  const froms = [];
  const godel = client(({ service }) =>
    service(EventService, {
      async *subscribeEvents(req) {
        froms.push(req.fromSequence);
        const from = req.fromSequence ?? 0n;
        yield { item: { case: "event", value: { sequence: from + 1n, type: "agent:start" } } };
        if (froms.length === 1) {
          yield { item: { case: "event", value: { sequence: from + 2n, type: "agent:start" } } };
          throw new ConnectError("event service restarting", Code.Unavailable);
        }
        yield { item: { case: "end", value: { code: 0 } } };
      },
    }),
  );
  const seen = [];
  for await (const event of godel.events.subscribe({ fromSequence: 10n })) seen.push(event.sequence);
  assert.deepEqual(seen, [11n, 12n, 13n]);
  assert.deepEqual(froms, [10n, 12n]);
});

test("errors are typed and carry ErrorInfo and BadRequest; creates get a request_id", async () => {
  const seen = {};
  const godel = client(({ service }) =>
    service(AgentService, {
      createAgent(req, ctx) {
        seen.key = ctx.requestHeader.get("x-api-key");
        seen.requestId = req.requestId;
        const error = new ConnectError("bad request", Code.InvalidArgument);
        error.details = [
          create(ErrorInfoSchema, { reason: "INVALID_ARGUMENT", domain: "godel" }),
          create(BadRequestSchema, { fieldViolations: [{ field: "task", description: "is required" }] }),
        ].map((m) => ({ desc: m.$typeName === "google.rpc.ErrorInfo" ? ErrorInfoSchema : BadRequestSchema, value: m }));
        throw error;
      },
    }),
  );
  const err = await godel.agents.create({}).then(
    () => assert.fail("create succeeded"),
    (e) => e,
  );
  assert.ok(err instanceof InvalidArgumentError);
  assert.ok(!(err instanceof NotFoundError));
  assert.equal(err.reason, "INVALID_ARGUMENT");
  assert.deepEqual(err.fieldViolations, [{ field: "task", description: "is required" }]);
  assert.equal(seen.key, "godel_sk_test");
  assert.match(seen.requestId, /^[0-9a-f-]{36}$/);
});
