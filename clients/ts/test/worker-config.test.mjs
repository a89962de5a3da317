// Unit tests of the TypeScript worker's settings (dist/worker/config.js): the Python worker's
// GODEL_* variables, language=typescript always advertised, bad values refused with the name.
import assert from "node:assert/strict";
import { test } from "node:test";
import { loadConfig, maxWorkerCapacity, parseLabels } from "../dist/worker/config.js";

test("labels from GODEL_WORKER_LABELS, with language=typescript added", () => {
  const cfg = loadConfig({ GODEL_WORKER_LABELS: "pool=gpu, zone=eu", GODEL_WORKER_CONNECT: "a:1,b:2", GODEL_HOME: "/srv/godel" });
  assert.deepEqual(cfg.labels, { pool: "gpu", zone: "eu", language: "typescript" });
  assert.deepEqual(cfg.connect, ["a:1", "b:2"]);
  assert.equal(cfg.worktreeRoot, "/srv/godel-worktrees");
  assert.equal(cfg.sandbox, "bwrap");
  assert.equal(cfg.capacity, 16);
});

test("a worker cannot claim another language", () => {
  assert.equal(loadConfig({ GODEL_WORKER_LABELS: "language=go" }).labels["language"], "typescript");
});

test("bad settings are refused, naming the variable", () => {
  assert.throws(() => parseLabels("novalue"), /GODEL_WORKER_LABELS/);
  assert.throws(() => loadConfig({ GODEL_WORKER_CAPACITY: "-1" }), /GODEL_WORKER_CAPACITY/);
  assert.throws(() => loadConfig({ GODEL_SANDBOX: "docker" }), /GODEL_SANDBOX/);
  assert.throws(() => loadConfig({ GODEL_SANDBOX_PATHS: "relative/dir" }), /GODEL_SANDBOX_PATHS/);
  assert.throws(() => loadConfig({ GODEL_TLS_CA_FILE: "/ca.pem" }), /GODEL_TLS_CA_FILE/);
});

test("the most runs a worker may take is half of what its heartbeat may list in the contract", () => {
  assert.equal(maxWorkerCapacity(), 10000);
});

test("GODEL_WORKER_CAPACITY above that is refused, naming the variable and the range", () => {
  assert.equal(loadConfig({ GODEL_WORKER_CAPACITY: "10000" }).capacity, 10000);
  assert.equal(loadConfig({ GODEL_WORKER_CAPACITY: "0" }).capacity, 0);
  assert.throws(() => loadConfig({ GODEL_WORKER_CAPACITY: "10001" }), {
    message: 'GODEL_WORKER_CAPACITY must be a whole number 0..10000, got "10001"',
  });
  assert.throws(() => loadConfig({ GODEL_WORKER_CAPACITY: "-1" }), /GODEL_WORKER_CAPACITY must be a whole number 0\.\.10000/);
});
