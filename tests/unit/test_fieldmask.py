"""Update masks (runtime/fieldmask.py): which fields an Update changes, and copying them to a row."""

from __future__ import annotations

from google.protobuf import field_mask_pb2

from godel.v1 import team_pb2, workflow_pb2
from godel_server.runtime.fieldmask import apply_update, update_paths
from godel_server.runtime.validation import Violations
from godel_server.team.models import TeamRow, WorkflowRow

UPDATABLE = ("name", "description", "metadata", "config")
DEFAULT = ("name", "description", "metadata")


def paths(*given: str, nested: tuple[str, ...] = ()) -> tuple[frozenset[str], list[str]]:
    v = Violations()
    fields = update_paths(
        field_mask_pb2.FieldMask(paths=list(given)), UPDATABLE, default=DEFAULT, v=v, nested=nested
    )
    return fields, [f"{i.field}: {i.description}" for i in v.items]


def test_an_empty_mask_updates_the_default_fields() -> None:
    assert paths() == (frozenset(DEFAULT), [])


def test_every_path_outside_the_updatable_fields_is_named() -> None:
    fields, problems = paths("name", "status", "id")
    assert fields == {"name"}
    assert problems == [
        "update_mask: 'status' cannot be updated (updatable: name, description, metadata, config)",
        "update_mask: 'id' cannot be updated (updatable: name, description, metadata, config)",
    ]


def test_a_path_into_a_field_counts_only_where_the_resource_allows_it() -> None:
    assert paths("config.size", nested=("config",)) == (frozenset({"config"}), [])
    fields, problems = paths("config.size")
    assert fields == frozenset() and len(problems) == 1


def test_apply_update_copies_the_fields_as_rows_store_them() -> None:
    row = TeamRow(name="old", description="was", meta={"a": 1}, config={"size": 1}, budget_allocated=None)
    team = team_pb2.Team(name="new", description="", config=team_pb2.TeamConfig(size=3))
    team.metadata.update({"owner": "me"})
    apply_update(row, team, {"name", "description", "metadata", "config"})
    assert (row.name, row.description, row.meta, row.config) == ("new", None, {"owner": "me"}, {"size": 3})
    untouched = WorkflowRow(name="keep", context={"x": 1})
    apply_update(untouched, workflow_pb2.Workflow(name="other"), {"context"})
    assert (untouched.name, untouched.context) == ("keep", {})
