// Unit tests of the TypeScript worker's limits watchdog (dist/worker/procs.js): one sampler walks
// every watched process tree per pass, with one timer, not a timer and a walk per run every 100 ms
// (a thousand agents made ten thousand synchronous /proc walks a second on the event loop). A tree
// over its process limit is still stopped with the reason.
// The walks are seen by wrapping fs.readFileSync (syncBuiltinESMExports carries it to procs.js's import).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import { after, test } from "node:test";
import { pauseAfter, watch } from "../dist/worker/procs.js";

const TREES = 20;
const roomy = { memoryMb: 1_000_000, processes: 0, cpuSeconds: 0 };

/** Counts the reads of /proc/<root>/stat of the roots started here: one per walk of the root's tree.
 * `costMs` busy-waits in each, to make a long pass. */
const walks = new Map();
let costMs = 0;
let onWalk = () => undefined;
const readFileSync = fs.readFileSync;
fs.readFileSync = function (path, ...rest) {
  const root = typeof path === "string" && /^\/proc\/(\d+)\/stat$/.exec(path)?.[1];
  if (root && walks.has(Number(root))) {
    walks.set(Number(root), walks.get(Number(root)) + 1);
    onWalk();
    for (const until = performance.now() + costMs; performance.now() < until; );
  }
  return readFileSync.call(this, path, ...rest);
};
syncBuiltinESMExports();
after(() => {
  fs.readFileSync = readFileSync;
  syncBuiltinESMExports();
});

const started = [];
after(() => started.forEach((child) => kill(child)));
function kill(child) {
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    // gone
  }
}
/** A process leading its own group (detached: pgid == pid). */
function start(...argv) {
  const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: "ignore" });
  started.push(child);
  walks.set(child.pid, 0);
  return child;
}
const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
async function until(condition, what) {
  for (const deadline = Date.now() + 10_000; !condition(); await sleep(10)) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
  }
}

test("many watched trees are walked in one pass per interval, by one timer", async () => {
  const children = Array.from({ length: TREES }, () => start("sleep", "60"));
  const before = timers();
  const unwatch = children.map((c) => watch(c.pid, roomy, 0, (reason) => assert.fail(reason)));
  // A timer per run was TREES timers; one sampler holds one.
  const timersWatching = timers() - before;
  await until(() => children.every((c) => walks.get(c.pid) > 0), "a walk of every tree");
  children.forEach((c) => walks.set(c.pid, 0));
  await sleep(1000); // the window the walks are counted in
  const counts = children.map((c) => walks.get(c.pid));
  unwatch.forEach((stop) => stop());
  assert.equal(timersWatching, 1, `${timersWatching} timers for ${TREES} watched trees`);
  // one pass per 100 ms: about 10 walks of each tree in the window, never more than one per pass
  assert.ok(counts.every((n) => n >= 3 && n <= 11), `walks per tree in 1 s: ${counts}`);
  assert.equal(timers(), before, "an empty sampler keeps no timer");
});

test("a long pass yields to the event loop and spaces the passes out", async () => {
  const child = start("sleep", "60");
  costMs = 3; // 64 watches: a 192 ms pass, in two slices
  const unwatch = Array.from({ length: 64 }, () => watch(child.pid, roomy, 0, (reason) => assert.fail(reason)));
  let turns = 0; // of the event loop: the walks between two are the ones it waited for
  let lastTurn = -1;
  let walksInTurn = 0;
  let mostWalksInTurn = 0;
  onWalk = () => {
    walksInTurn = turns === lastTurn ? walksInTurn + 1 : 1;
    lastTurn = turns;
    mostWalksInTurn = Math.max(mostWalksInTurn, walksInTurn);
  };
  try {
    for (const end = performance.now() + 1000; performance.now() < end; turns++) {
      await new Promise((ok) => setImmediate(ok));
    }
    const walked = walks.get(child.pid);
    // Passes at 100 ms and, after a pause of 3 x 192 ms, at about 870 ms. A timer per watch walked
    // all the time, the 64 walks of each interval at once.
    assert.ok(walked >= 64 && walked <= 2 * 64, `${walked} walks in 1 s`);
    assert.ok(mostWalksInTurn <= 32, `${mostWalksInTurn} walks without a turn of the event loop`);
  } finally {
    onWalk = () => undefined;
    costMs = 0;
    unwatch.forEach((stop) => stop());
  }
});

test("a tree over its process limit is stopped once, with the reason", async () => {
  const child = start("sh", "-c", "sleep 60 & sleep 60 & wait");
  const reasons = [];
  const stop = watch(child.pid, { memoryMb: 0, processes: 2, cpuSeconds: 0 }, 0, (reason) => reasons.push(reason));
  try {
    await until(() => reasons.length > 0, "the stop");
    await sleep(250); // two more intervals: no second stop
  } finally {
    stop();
    kill(child);
  }
  assert.equal(reasons.length, 1, `${reasons}`);
  assert.match(reasons[0], /^process limit reached: 3 processes, limit 2/);
});

test("a tree with no process left leaves the sampler, and its timer stops", async () => {
  const before = timers();
  const child = start("sleep", "60");
  watch(child.pid, roomy, 0, (reason) => assert.fail(reason));
  assert.equal(timers(), before + 1);
  kill(child);
  await until(() => timers() === before, "the sampler to let go of the tree");
});

test("sampling takes at most a quarter of the time, at most 10 passes a second", () => {
  assert.equal(pauseAfter(10), 100);
  assert.equal(pauseAfter(1000), 3000);
});
