// Budgets: every budget the caller may read (organization, users, teams, agents), spent against
// its limit, refreshed on budget:* events; and a form that sets one (BudgetService.SetBudget:
// creates or replaces the budget of one entity) where the caller's role allows it.
import { BudgetEntityType, BudgetPeriod } from "@godel-ai/client/gen/godel/v1/budget_pb";
import { useState } from "preact/hooks";
import { ConfirmedForm, type Ask } from "./confirm.js";
import { Choice, Field } from "./field.js";
import { enumName, usd } from "./format.js";
import { useLive } from "./live.js";
import { More, PAGE_SIZE, usePaged } from "./paging.js";
import { can, type Session } from "./session.js";

export function Budgets(props: { session: Session; ask: Ask }) {
  const { session, ask } = props;
  const client = session.client;
  const budgets = usePaged((pageToken) =>
    client.budgets.listBudgets({ pageSize: PAGE_SIZE, pageToken }).then((r) => [r.budgets, r.nextPageToken]),
  );
  const { error, reload } = useLive(client, { pattern: ["budget:*"] }, budgets.load, [budgets.count]);
  return (
    <section>
      <h2>Budgets</h2>
      {error && <p class="error">{error}</p>}
      {can(session, "budget", "update") && <SetBudget session={session} ask={ask} onDone={reload} />}
      <table class="budgets">
        <tbody>
          {budgets.items.map((budget) => (
            <tr data-budget={budget.id} data-entity={budget.entityId} key={budget.id}>
              <td>{enumName(BudgetEntityType, budget.entityType)}</td>
              <td>{budget.entityId || "—"}</td>
              <td>{enumName(BudgetPeriod, budget.period)}</td>
              <td data-figure="budget">
                {usd(budget.usedBudget)} of {usd(budget.totalBudget)}
              </td>
              <td>
                <meter min={0} max={100} value={budget.percentage} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <More list="budgets" paged={budgets} />
      {budgets.items.length === 0 && <p class="empty">No budgets.</p>}
    </section>
  );
}

function SetBudget(props: { session: Session; ask: Ask; onDone: () => void }) {
  const [entityType, setEntityType] = useState<number>(BudgetEntityType.TEAM);
  const [entityId, setEntityId] = useState("");
  const [total, setTotal] = useState("");
  const [period, setPeriod] = useState<number>(BudgetPeriod.NONE);
  const kind = enumName(BudgetEntityType, entityType);
  const set = () =>
    props.session.client.budgets.setBudget({
      entityType,
      entityId: entityId.trim(),
      // Not a number: the API says why (total_budget), as for any other bad value.
      totalBudget: total.trim() ? Number(total) : 0,
      period,
    });
  const done = () => {
    setEntityId("");
    setTotal("");
    props.onDone();
  };
  return (
    <ConfirmedForm
      name="set-budget"
      ask={props.ask}
      verb="set"
      label="Set budget"
      question={() => `Set the budget of ${kind} ${entityId.trim()} to $${total.trim()} (${enumName(BudgetPeriod, period)})?`}
      action={set}
      onDone={done}
    >
      <Choice name="entityType" values={BudgetEntityType} value={entityType} set={setEntityType} />
      <Field name="entityId" placeholder="id (organization: its name)" value={entityId} set={setEntityId} required />
      <Field name="total" placeholder="limit in USD" value={total} set={setTotal} required />
      <Choice name="period" values={BudgetPeriod} value={period} set={setPeriod} />
    </ConfirmedForm>
  );
}
