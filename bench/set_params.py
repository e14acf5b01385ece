"""Set dotted keys of a params.yaml in place, comments kept: the bench scripts' KEY=VALUE overrides.

    python bench/set_params.py params.yaml train.epochs=1 'seeds=[]'

Each VALUE is read as YAML (numbers, lists, mappings); a missing parent key is an error.
"""

from __future__ import annotations

import sys

from ruamel.yaml import YAML


def main() -> None:
    path, *pairs = sys.argv[1:]
    yaml = YAML()
    with open(path) as f:
        params = yaml.load(f)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            sys.exit(f"{pair!r}: expected KEY=VALUE")
        *parents, last = key.split(".")
        node = params
        for part in parents:
            if part not in node:
                sys.exit(f"{key}: no key {part!r} in {path}")
            node = node[part]
        node[last] = YAML(typ="safe").load(value)
    with open(path, "w") as f:
        yaml.dump(params, f)


if __name__ == "__main__":
    main()
