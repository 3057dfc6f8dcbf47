"""Write the JSON Schema of every file circuitwise writes to ``schema/`` (``make schema``).

The committed files are tested equal to the models' ``json_schema()`` (tests/unit/schema), so a
change to a model without re-exporting fails the tests. Run from the repository root.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from circuitwise.schema import FILES


def render(model: type) -> str:
    return json.dumps(model.json_schema(), indent=1, sort_keys=True) + "\n"


def main(root: Path = Path("schema")) -> None:
    root.mkdir(exist_ok=True)
    for name, model in FILES.items():
        path = root / f"{name}.schema.json"
        path.write_text(render(model), encoding="utf-8")
        sys.stdout.write(f"{path}\n")


if __name__ == "__main__":
    main()
