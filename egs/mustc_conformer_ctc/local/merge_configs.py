#!/usr/bin/env python3
"""Print BASE.yaml updated with OVERRIDE.yaml: nested mappings merge, other values replace.

Fine-tuning reuses the trained model's saved config (architecture, data, tokens)
and changes only what ``finetune.yaml`` names, so the architecture is written once.
ESPnet's bookkeeping entries of a saved config, which are no training options,
are left out so the result is a valid ``--config``.
"""

import sys
from typing import Any, Dict

import yaml

ESPNET_BOOKKEEPING = ("required", "version", "distributed")


def merge(base: Dict[str, Any], override: Dict[str, Any]) -> Dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def main() -> int:
    if len(sys.argv) != 3:
        print(f"usage: {sys.argv[0]} BASE.yaml OVERRIDE.yaml > OUT.yaml", file=sys.stderr)
        return 1
    documents = []
    for path in sys.argv[1:]:
        with open(path, encoding="utf-8") as f:
            documents.append(yaml.safe_load(f) or {})
    merged = {k: v for k, v in merge(*documents).items() if k not in ESPNET_BOOKKEEPING}
    yaml.safe_dump(merged, sys.stdout, allow_unicode=True, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
