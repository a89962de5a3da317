// Budgets: every budget the caller may read (organization, users, teams, agents), spent against
// its limit, refreshed on budget:* events.
import { BudgetEntityType, BudgetPeriod, type Budget } from "@godel-ai/client/gen/godel/v1/budget_pb";
import { useState } from "preact/hooks";
import { enumName, usd } from "./format.js";
import { useLive } from "./live.js";
import type { Session } from "./session.js";

export function Budgets(props: { session: Session }) {
  const client = props.session.client;
  const [budgets, setBudgets] = useState<Budget[]>([]);
  const { error } = useLive(
    client,
    { pattern: ["budget:*"] },
    async () => setBudgets((await client.budgets.listBudgets({})).budgets),
    [],
  );
  return (
    <section>
      <h2>Budgets</h2>
      {error && <p class="error">{error}</p>}
      <table class="budgets">
        <tbody>
          {budgets.map((budget) => (
            <tr data-budget={budget.id} key={budget.id}>
              <td>{enumName(BudgetEntityType, budget.entityType)}</td>
              <td>{budget.entityId || "—"}</td>
              <td>{enumName(BudgetPeriod, budget.period)}</td>
              <td>
                {usd(budget.usedBudget)} of {usd(budget.totalBudget)}
              </td>
              <td>
                <meter min={0} max={100} value={budget.percentage} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {budgets.length === 0 && <p class="empty">No budgets.</p>}
    </section>
  );
}
