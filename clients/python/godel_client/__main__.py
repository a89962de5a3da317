"""``python -m godel_client`` runs the ``godel`` CLI."""

from __future__ import annotations

import sys

from godel_client.cli import main

sys.exit(main())
