// Drives the console in headless Chromium (Debian's /usr/bin/chromium through playwright-core;
// no browser download) the way a user does, for tests/integration/test_console.py:
// log in with an API key, start a workflow and watch its DAG complete, page past the first page of
// teams, create a team and start it, create a workflow (started; both complete), set that team's budget (a bad limit
// first: the error names the field), spawn an agent and watch it complete without a reload, open
// its logs, spawn a second one and kill it, watch the event stream, and log in as a viewer with a
// password (no forms, no actions). Saves a screenshot of each page. Prints one JSON line per step;
// the Python test checks them against the API.
//
// Environment: CONSOLE_URL (…/ui/), GODEL_API_KEY (admin), VIEWER_USER and VIEWER_PASSWORD,
// WORKFLOW_ID (a workflow not started: source -> left, right -> sink), PAGE_TAG and PAGE_TEAMS
// (that many teams whose names hold PAGE_TAG, more than a page), SCREENSHOTS (a directory), TAG
// (makes this run's tasks unique), CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const url = env("CONSOLE_URL");
const shots = env("SCREENSHOTS");
const tag = env("TAG");
const WAIT = 90_000; // a busy machine: agents may take a while to start

const report = (step, fields = {}) => console.log(JSON.stringify({ step, ...fields }));

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (err) => problems.push(String(err)));

  // A tab keeps its login in sessionStorage: every new tab logs in.
  const logIn = async (tab, screenshot) => {
    await tab.locator("#login-key").waitFor();
    if (screenshot) await tab.screenshot({ path: `${shots}/login.png` });
    await tab.fill("#login-key input[name=apiKey]", env("GODEL_API_KEY"));
    await tab.click("#login-key button[type=submit]");
  };

  // -- log in with the API key --------------------------------------------------------------
  await page.goto(url);
  await logIn(page, true);
  const who = await page.locator("header .who").textContent();
  report("logged-in", { who, role: await page.locator("header .who").getAttribute("data-role") });
  // Set once, after the login: gone if the page ever reloads.
  await page.evaluate(() => (window.__sameDocument = true));

  const spawn = async (task, command) => {
    await page.fill("form.spawn input[name=task]", task);
    await page.fill("form.spawn input[name=command]", command);
    await page.click("form.spawn button[type=submit]");
    await page.locator("dialog.confirm[open]").waitFor();
    await page.click("dialog.confirm [data-confirm]");
    const row = page.locator("table.agents tr", { hasText: task });
    await row.waitFor();
    return { row, id: await row.getAttribute("data-agent") };
  };

  // -- a workflow's DAG (created by the test), started here, its steps completing live ------------
  const workflow = env("WORKFLOW_ID");
  await page.evaluate((id) => (window.location.hash = `#/workflows/${id}`), workflow);
  const dag = page.locator(`section[data-workflow="${workflow}"]`);
  await dag.locator("[data-step]").nth(3).waitFor();
  const sink = dag.locator('[data-step="sink"]');
  const sinkFirstSeen = await sink.getAttribute("data-status");
  await dag.locator('[data-action="start"]').click();
  await page.locator("dialog.confirm[open]").waitFor();
  await page.click("dialog.confirm [data-confirm]");
  await sink.and(page.locator('[data-status="completed"]')).waitFor();
  await dag.locator('h2 [data-status="completed"]').waitFor();
  const depths = await dag.locator(".layer").evaluateAll((layers) =>
    layers.map((layer) => [...layer.querySelectorAll("[data-step]")].map((step) => step.dataset.step)),
  );
  report("workflow", { workflow, sinkFirstSeen, depths });
  await page.screenshot({ path: `${shots}/workflow.png` });
  await page.click('header nav a[href="#/teams"]');
  const listed = page.locator(`table.workflows tr[data-workflow="${workflow}"] [data-status]`);
  report("teams", { workflowStatus: await listed.getAttribute("data-status") });

  // -- the lists follow next_page_token: the test made more teams than one page holds ----------
  const pageTag = env("PAGE_TAG");
  const teamRows = page.locator("table.teams tbody tr");
  await page.locator('[data-more="teams"]').waitFor();
  const firstPage = await teamRows.count();
  await page.click('[data-more="teams"]');
  const paged = page.locator("table.teams tr", { hasText: pageTag });
  await page.waitForFunction(
    ([tag, want]) => [...document.querySelectorAll("table.teams tr")].filter((r) => r.textContent.includes(tag)).length >= want,
    [pageTag, Number(env("PAGE_TEAMS"))],
  );
  report("paged", { firstPage, afterMore: await teamRows.count(), tagged: await paged.count() });

  // -- create a team and a workflow (started) from the forms, each confirmed ---------------------
  const confirm = async () => {
    await page.locator("dialog.confirm[open]").waitFor();
    await page.click("dialog.confirm [data-confirm]");
  };
  await page.fill("form.create-team input[name=name]", `console-team ${tag}`);
  await page.fill("form.create-team input[name=task]", "echo from the console");
  await page.selectOption("form.create-team select[name=strategy]", { label: "pipeline" });
  await page.fill("form.create-team input[name=command]", "echo team says hi");
  await page.click("form.create-team button[type=submit]");
  await confirm();
  const teamRow = page.locator("table.teams tr", { hasText: `console-team ${tag}` });
  await teamRow.waitFor();
  const team = await teamRow.getAttribute("data-team");
  const teamFirstSeen = await teamRow.locator("[data-status]").getAttribute("data-status");
  await teamRow.locator('[data-action="start"]').click();
  await confirm();
  await teamRow.locator('[data-status="completed"]').waitFor();
  report("team-created", { team, teamFirstSeen });

  const definition = { name: `console-made ${tag}`, command: ["sh", "-c", "{task}"], steps: [{ id: "only", task: "echo made here" }] };
  await page.fill("form.create-workflow textarea[name=definition]", JSON.stringify(definition));
  await page.check("form.create-workflow input[name=start]");
  await page.click("form.create-workflow button[type=submit]");
  await confirm();
  const madeRow = page.locator("table.workflows tr", { hasText: `console-made ${tag}` });
  await madeRow.locator('[data-status="completed"]').waitFor();
  report("workflow-created", { workflow: await madeRow.getAttribute("data-workflow") });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: `${shots}/teams.png` });

  // -- a budget for that team: a bad limit is refused (the field named), a good one is listed -----
  await page.click('header nav a[href="#/budgets"]');
  await page.selectOption("form.set-budget select[name=entityType]", { label: "team" });
  await page.fill("form.set-budget input[name=entityId]", team);
  await page.fill("form.set-budget input[name=total]", "0");
  await page.click("form.set-budget button[type=submit]");
  await confirm();
  const refused = await page.locator('[data-error-for="set-budget"]').textContent();
  await page.fill("form.set-budget input[name=total]", "12.5");
  await page.click("form.set-budget button[type=submit]");
  await confirm();
  const budgetRow = page.locator(`table.budgets tr[data-entity="${team}"]`);
  await budgetRow.waitFor();
  report("budget", {
    refused,
    errorGone: await page.locator('[data-error-for="set-budget"]').count(),
    shown: await budgetRow.locator('[data-figure="budget"]').textContent(),
  });
  await page.screenshot({ path: `${shots}/budgets.png` });
  await page.click('header nav a[href="#/"]');

  // -- spawn an agent; it completes live ---------------------------------------------------------
  const first = await spawn(`console-first ${tag}`, "sleep 2; echo console says hi; echo to stderr >&2");
  const seen = await first.row.locator("[data-status]").getAttribute("data-status");
  await first.row.locator('[data-status="completed"]').waitFor();
  report("completed-live", { agent: first.id, firstSeen: seen, sameDocument: await page.evaluate(() => window.__sameDocument === true) });
  await page.screenshot({ path: `${shots}/fleet.png` });

  // -- its page: state history and logs --------------------------------------------------------
  await first.row.locator("a").click();
  await page.locator(`section.agent-page[data-agent="${first.id}"]`).waitFor();
  await page.locator("pre.logs", { hasText: "console says hi" }).waitFor();
  await page.locator('table.transitions tr[data-to="completed"]').waitFor();
  const logs = await page.locator("pre.logs").textContent();
  const states = await page.locator("table.transitions tr").evaluateAll((rows) => rows.map((r) => r.dataset.to));
  report("agent-page", { agent: first.id, logs, states });
  await page.screenshot({ path: `${shots}/agent.png`, fullPage: true });

  // -- the event stream, in a second tab, while a second agent is spawned and killed -------------
  const events = await context.newPage();
  await events.goto(`${url}#/events`);
  await logIn(events, false);
  await events.fill("form.filters input[name=pattern]", "agent:*");
  await events.click("form.filters button[type=submit]");

  await page.click('header nav a[href="#/"]');
  const second = await spawn(`console-second ${tag}`, "sleep 300");
  await second.row.locator('[data-status="running"]').waitFor();
  await second.row.locator('[data-action="kill"]').click();
  await page.locator("dialog.confirm[open]").waitFor();
  await page.click("dialog.confirm [data-confirm]");
  await second.row.locator('[data-status="killed"]').waitFor();
  report("killed", { agent: second.id, sameDocument: await page.evaluate(() => window.__sameDocument === true) });

  await events.locator('table.events tr[data-type="agent:kill"]').first().waitFor();
  const types = await events.locator("table.events tr").evaluateAll((rows) => rows.map((r) => r.dataset.type));
  report("events", { types });
  await events.screenshot({ path: `${shots}/events.png` });

  // -- a viewer, logged in with a password, gets no actions ------------------------------------
  const viewer = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  viewer.setDefaultTimeout(WAIT);
  const look = await viewer.newPage();
  await look.goto(url);
  await look.fill("#login-password input[name=username]", env("VIEWER_USER"));
  await look.fill("#login-password input[name=password]", env("VIEWER_PASSWORD"));
  await look.click("#login-password button[type=submit]");
  await look.locator("table.agents").waitFor();
  await look.locator("[data-figure=total]", { hasText: /\d/ }).waitFor();
  const fleetView = {
    spawnForms: await look.locator("form.spawn").count(),
    actionButtons: await look.locator("[data-action]").count(),
    rows: await look.locator("table.agents tbody tr").count(),
  };
  await look.click('header nav a[href="#/teams"]');
  await look.locator("table.teams").waitFor({ state: "attached" });
  const teamsView = { forms: await look.locator("form").count(), actionButtons: await look.locator("[data-action]").count() };
  await look.click('header nav a[href="#/budgets"]');
  await look.locator("table.budgets").waitFor({ state: "attached" });
  const budgetsView = { forms: await look.locator("form").count() };
  report("viewer", { role: await look.locator("header .who").getAttribute("data-role"), ...fleetView, teamsView, budgetsView });
  report("problems", { problems });
} finally {
  await browser.close();
}
