"""Test doubles shared by unit and integration tests and the benchmarks: a fake OpenAI-compatible
endpoint (openai_server.FakeOpenAI), a fake agent-service replica for workers
(worker_controller), and fakes of the agent service for the team service's logic: team
strategies (team.PlayedTeam) and the workflow scheduler (workflows.PlayedWorkflow) in memory,
the WorkflowEngine on a real database (members.InstantMembers, also used by bench/), and the
agent run coordinator over an in-memory store with a fake worker (agents)."""
