"""``godel cluster``: the cluster registry of a federation (list, get, register, heartbeat,
unregister, route)."""

from __future__ import annotations

import argparse
from typing import Any

from godel.v1 import cluster_service_pb2
from godel_client import render
from godel_client.cli_common import (
    command_parser,
    json_object,
    list_or_note,
    non_negative_int,
    out,
    positive_int,
    show,
    to_json,
)
from godel_client.client import GodelClient
from godel_client.enums import BALANCE_STRATEGY_NAMES


def _list(client: GodelClient, args: argparse.Namespace) -> int:
    return list_or_note(
        args,
        "clusters",
        client.clusters.list(region=args.region),
        cluster_service_pb2.ListClustersResponse(),
        render.clusters_table,
        limit=args.limit,
    )


def _get(client: GodelClient, args: argparse.Namespace) -> int:
    return show(args, client.clusters.get(args.id), render.cluster_detail)


def _register(client: GodelClient, args: argparse.Namespace) -> int:
    cluster = client.clusters.register(
        args.name,
        args.endpoint,
        region=args.region,
        max_agents=args.max_agents,
        features=args.feature or (),
        supported_models=args.model or (),
        metadata=args.metadata,
    )
    out(to_json(cluster) if args.json else cluster.id)
    return 0


def _heartbeat(client: GodelClient, args: argparse.Namespace) -> int:
    reply = client.clusters.heartbeat(args.id, current_agents=args.agents, max_agents=args.max_agents)
    if args.json:
        out(to_json(reply))
    else:
        cluster = reply.cluster
        out(
            f"cluster {cluster.id}: {render.cluster_status(cluster)}, next heartbeat in {reply.next_heartbeat_seconds}s"
        )
    return 0


def _unregister(client: GodelClient, args: argparse.Namespace) -> int:
    client.clusters.unregister(args.id)
    return 0


def _route(client: GodelClient, args: argparse.Namespace) -> int:
    reply = client.clusters.route(
        region=args.region,
        require_region=args.require_region,
        model=args.model,
        features=args.feature or (),
        min_capacity=args.min_capacity,
        strategy=args.strategy,
        session_id=args.session,
    )
    out(to_json(reply) if args.json else f"{reply.cluster.name}\t{reply.cluster.endpoint}\t{reply.reason}")
    return 0


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    cluster = commands.add_parser("cluster", help="the cluster registry of a federation")
    actions = cluster.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = command_parser(actions, "list", _list, common, help="list registered clusters")
    listing.add_argument("--region", help="only clusters of this region")
    listing.add_argument("--limit", metavar="N", type=positive_int, help="show at most N clusters")
    get = command_parser(actions, "get", _get, common, help="show one cluster")
    get.add_argument("id", help="cluster id")
    register = command_parser(
        actions, "register", _register, common, help="register a cluster and print its id"
    )
    register.add_argument("name", help="cluster name")
    register.add_argument("endpoint", help="its gateway address, e.g. godel-eu.example.com:7373")
    register.add_argument("--region", help="region, e.g. eu-west")
    register.add_argument("--max-agents", metavar="N", type=non_negative_int, help="agent capacity")
    register.add_argument("--feature", metavar="F", action="append", help="a feature it offers (repeatable)")
    register.add_argument("--model", metavar="M", action="append", help="a model it serves (repeatable)")
    register.add_argument("--metadata", metavar="JSON", type=json_object, help="metadata object")
    heartbeat = command_parser(
        actions, "heartbeat", _heartbeat, common, help="report a cluster alive with its load"
    )
    heartbeat.add_argument("id", help="cluster id")
    heartbeat.add_argument(
        "--agents", metavar="N", type=non_negative_int, default=0, help="agents running now"
    )
    heartbeat.add_argument("--max-agents", metavar="N", type=non_negative_int, help="agent slots now")
    unregister = command_parser(
        actions, "unregister", _unregister, common, help="remove a cluster from the registry"
    )
    unregister.add_argument("id", help="cluster id or name")
    route = command_parser(
        actions, "route", _route, common, help="the cluster the registry picks (name, endpoint, why)"
    )
    route.add_argument("--region", help="preferred region (a requirement with --require-region)")
    route.add_argument("--require-region", action="store_true", help="only clusters in --region")
    route.add_argument("--model", help="only clusters that support this model")
    route.add_argument("--feature", metavar="F", action="append", help="a required feature (repeatable)")
    route.add_argument("--min-capacity", metavar="N", type=non_negative_int, default=0, help="free slots")
    route.add_argument("--strategy", choices=BALANCE_STRATEGY_NAMES, help="default: the registry's")
    route.add_argument("--session", metavar="ID", help="session affinity: route this session")
