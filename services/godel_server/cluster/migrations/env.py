from alembic import context

from godel_server.runtime.migrations import run_env

run_env(context)
