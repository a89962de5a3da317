#!/usr/bin/env python3
"""Start-to-complete time of a 100-agent `parallel` team, next to the same 100 agents created
directly through AgentService in the same run (the team's own overhead is the difference).

    .venv/bin/python bench/team_run.py [--agents 100] [--postgres] [--quick] [--home DIR --keep]

Every agent runs `sh -c 'echo done'` on the mesh's one worker (16 slots), so both runs are bound by
the same agent throughput; the figure to watch is the ratio team / direct. The figures go to
bench/results/team_run.json (--json OUT: elsewhere)."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

import grpc

from godel.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    common_pb2,
    team_pb2,
    team_service_pb2,
    team_service_pb2_grpc,
)

if TYPE_CHECKING:
    from bench import common
else:
    import common

NAME = "team_run"
COMMAND = ["sh", "-c", "echo done"]
ENDED = (agent_pb2.AGENT_STATUS_COMPLETED, agent_pb2.AGENT_STATUS_FAILED, agent_pb2.AGENT_STATUS_KILLED)


async def run_team(channel: grpc.aio.Channel, md: list[tuple[str, str]], size: int) -> dict[str, float]:
    teams = team_service_pb2_grpc.TeamServiceStub(channel)
    team = await teams.CreateTeam(
        team_service_pb2.CreateTeamRequest(
            name=f"bench-{size}",
            task="bench",
            config=team_pb2.TeamConfig(
                size=size, command=COMMAND, retry_policy=common_pb2.RetryPolicy(max_retries=0)
            ),
        ),
        metadata=md,
    )
    started = time.perf_counter()
    first_progress = 0.0
    updates = 0
    last = team
    async for update in teams.StartTeam(team_service_pb2.StartTeamRequest(id=team.id), metadata=md):
        updates += 1
        last = update.team
        if not first_progress and last.progress > 0:
            first_progress = time.perf_counter() - started
        if updates % 50 == 0:
            common.say(f"  team: {last.progress}% after {time.perf_counter() - started:.1f}s")
    total = time.perf_counter() - started
    if last.status != team_pb2.TEAM_STATUS_COMPLETED:
        raise SystemExit(f"team ended {team_pb2.TeamStatus.Name(last.status)}: {last.error}")
    return {"seconds": total, "first_member_done": first_progress, "updates": float(updates)}


async def run_direct(channel: grpc.aio.Channel, md: list[tuple[str, str]], size: int) -> dict[str, float]:
    agents = agent_service_pb2_grpc.AgentServiceStub(channel)
    label = f"direct-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    for _ in range(size):
        await agents.CreateAgent(
            agent_service_pb2.CreateAgentRequest(
                task="bench", label=label, max_retries=0, config=agent_pb2.AgentConfig(command=COMMAND)
            ),
            metadata=md,
        )
    while True:
        listed = await agents.ListAgents(
            agent_service_pb2.ListAgentsRequest(label=label, page_size=1000), metadata=md
        )
        done = [a for a in listed.agents if a.status in ENDED]
        if len(done) == size:
            break
        await asyncio.sleep(0.05)
    total = time.perf_counter() - started
    failed = [a for a in done if a.status != agent_pb2.AGENT_STATUS_COMPLETED]
    if failed:
        raise SystemExit(f"{len(failed)} direct agents did not complete")
    return {"seconds": total}


async def measure(address: str, api_key: str, size: int) -> tuple[dict[str, float], dict[str, float]]:
    md = [("x-api-key", api_key)]
    async with grpc.aio.insecure_channel(address) as channel:
        common.say("warm-up: a team of 4 ...")
        await run_team(channel, md, 4)
        common.say(f"{size} agents created directly through AgentService ...")
        direct = await run_direct(channel, md, size)
        common.say(f"  done in {direct['seconds']:.1f}s")
        common.say(f"a parallel team of {size} through TeamService.StartTeam ...")
        team = await run_team(channel, md, size)
        common.say(f"  done in {team['seconds']:.1f}s")
    return team, direct


def figures_of(payload: dict[str, Any]) -> dict[str, common.Figure]:
    """Both runs' seconds and agents/s, the team's overhead (team / direct) and its first member."""
    agents = payload["config"]["agents"]
    team, direct = payload["team"], payload["direct"]
    return {
        "direct CreateAgent/seconds": common.lower(direct["seconds"], "s"),
        "direct CreateAgent/agents per second": common.higher(agents / direct["seconds"], "agents/s"),
        "parallel team/seconds": common.lower(team["seconds"], "s"),
        "parallel team/agents per second": common.higher(agents / team["seconds"], "agents/s"),
        "parallel team/x direct": common.lower(team["seconds"] / direct["seconds"], "x"),
        "parallel team/first member done": common.lower(team["first_member_done"], "s"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--agents", type=int, default=100, help="agents in the team and created directly (100)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10 agents")
    common.add_json_option(parser, NAME)
    common.add_mesh_options(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.agents = 10
    if not 1 <= args.agents <= 1000:
        parser.error("--agents must be between 1 and 1,000")
    with common.Run(args.home, keep=args.keep, prefix="godel-bench-team-", postgres=args.postgres) as run:
        mesh, api_key = run.start(echo=False)
        facts = common.machine_facts(run.backend, libraries=(), envoy=True, pg=run.pg)
        team, direct = asyncio.run(measure(mesh.gateway_address, api_key, args.agents))
        print()
        print(f"machine: {facts}")
        print(f"{'run':<34} {'seconds':>8} {'agents/s':>9}")
        print(
            f"{'direct CreateAgent x' + str(args.agents):<34} {direct['seconds']:>8.2f} {args.agents / direct['seconds']:>9.1f}"
        )
        print(
            f"{'parallel team of ' + str(args.agents):<34} {team['seconds']:>8.2f} {args.agents / team['seconds']:>9.1f}"
        )
        print(
            f"team / direct: {team['seconds'] / direct['seconds']:.2f}x; first member done after "
            f"{team['first_member_done']:.2f}s; {int(team['updates'])} StartTeam updates streamed"
        )
        facts["load_avg_at_end"] = common.load_avg()
        payload = {
            "machine": facts,
            "config": {"agents": args.agents, "postgres": args.postgres},
            "team": team,
            "direct": direct,
        }
        common.write_results(NAME, payload, figures_of(payload), args.json)
        return 0
    return 130


if __name__ == "__main__":
    raise SystemExit(main())
