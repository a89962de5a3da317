// Unit tests of a run's outbox in the TypeScript worker (dist/worker/outbox.js): numbered updates
// and usage stay until acknowledged and go again in order; log batches are sent once.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { ConnectRequestSchema, RunState } from "../dist/gen/godel/v1/worker_service_pb.js";
import { RunOutbox, WINDOW } from "../dist/worker/outbox.js";

const update = (state) => create(ConnectRequestSchema, { message: { case: "update", value: { runId: "r", state } } });
const usage = (model, promptTokens) => create(ConnectRequestSchema, { message: { case: "usage", value: { runId: "r", model, promptTokens } } });
const logs = (message) => create(ConnectRequestSchema, { message: { case: "logs", value: { runId: "r", lines: [{ message }] } } });
const show = (taken) =>
  taken.map(([, m]) => (m.message.case === "logs" ? `logs:${m.message.value.lines[0].message}` : `${m.message.case}:${m.message.value.seq}`));

test("updates and usage get seqs 1, 2, ... when sent, and go again until acknowledged; logs go once", () => {
  const box = new RunOutbox();
  box.add(update(RunState.STARTING));
  box.add(logs("a"));
  box.add(update(RunState.RUNNING)); // supersedes STARTING, which never left
  box.add(usage("m", 1n));
  box.add(usage("m", 2n)); // added into the waiting usage
  assert.deepEqual(show(box.take(0)), ["logs:a", "update:1", "usage:2"]);
  box.add(update(RunState.SUCCEEDED));
  assert.deepEqual(show(box.take(0)), ["update:3"]);
  assert.equal(box.unacknowledged, 3);

  assert.ok(box.ack(2n));
  box.rewind(); // a reconnect
  assert.deepEqual(show(box.take(0)), ["update:3"]);
  assert.ok(box.ack(3n));
  assert.equal(box.length, 0);
  assert.equal(box.ack(3n), false);
});

test("a broken stream's unwritten messages go back in their place; overdue ones are found", () => {
  const box = new RunOutbox();
  box.add(update(RunState.RUNNING));
  box.add(logs("a"));
  box.add(update(RunState.SUCCEEDED));
  const taken = box.take(100);
  assert.equal(box.overdue(100 + 10_000, 10_000), false);
  assert.ok(box.overdue(100 + 10_001, 10_000));
  box.requeue(taken.slice(1)); // the first was written
  assert.deepEqual(show(box.take(200)), ["update:1", "logs:a", "update:2"]);
});

test("at most WINDOW numbered messages are in flight; the rest wait, in order", () => {
  const box = new RunOutbox();
  for (let i = 0; i <= WINDOW; i++) box.add(usage(`m${i}`, 1n));
  box.add(logs("after"));
  assert.equal(box.take(0).length, WINDOW);
  assert.deepEqual(box.take(0), []);
  box.ack(1n);
  assert.deepEqual(show(box.take(0)), [`usage:${WINDOW + 1}`, "logs:after"]);
});
