"""Kubernetes JSON schemas for kubeconform, offline: the strict schemas that the PyPI package
`kubernetes-validate` (a dev dependency) generates from Kubernetes' OpenAPI documents, rewritten
into kubeconform's layout (<dir>/v<version>-standalone-strict/<kind>-<group>-<version>.json) with
their references made local (`_definitions.json` beside them; no `$id` pointing at the web).

    python tools/deploy/k8s_schemas.py OUT_DIR VERSION...
"""

from __future__ import annotations

import importlib.resources
import json
import shutil
import sys
from pathlib import Path

REMOTE_REF = '"/api/_definitions.json#'


def convert(version: str, out_dir: Path) -> Path:
    package = Path(str(importlib.resources.files("kubernetes_validate"))) / "kubernetes-json-schema"
    source = package / f"v{version}-local-strict"
    if not source.is_dir():
        have = sorted(p.name.split("-")[0] for p in package.glob("v*-local-strict"))
        raise SystemExit(f"kubernetes-validate has no schemas for {version}; it has {', '.join(have)}")
    target = out_dir / f"v{version}-standalone-strict"
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for path in source.glob("*.json"):
        schema = json.loads(path.read_text(encoding="utf-8").replace(REMOTE_REF, '"_definitions.json#'))
        schema.pop("$id", None)  # it would make "_definitions.json" resolve against kubernetes.io
        (staging / path.name).write_text(json.dumps(schema), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    staging.replace(target)
    return target


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = Path(argv[0])
    for version in argv[1:]:
        if not (out_dir / f"v{version}-standalone-strict" / "_definitions.json").is_file():
            print(f"k8s schemas {version} -> {convert(version, out_dir)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
