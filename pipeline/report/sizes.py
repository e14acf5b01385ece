"""How many test images each number of a record is taken over, in one sentence."""

from __future__ import annotations

from typing import Any


def evaluated_on(record: dict[str, Any]) -> str:
    """'n = ... (subset)', then each attack's own n where attacks differ, and the worst case's images."""
    text = f"n = {record['n']} ({record['subset']})"
    own = {k: int(v["n"]) for k, v in record.items() if isinstance(v, dict) and "validity" in v and "n" in v}
    if own and set(own.values()) != {int(record["n"])}:
        text += "; per attack: " + ", ".join(f"{k} n = {n}" for k, n in own.items())
        worst = record.get("worst_case", {})
        if "n" in worst:
            text += (f"; worst case over {', '.join(worst.get('attacks', own))} on the first {worst['n']} images "
                     "(those every attack saw)")
    return text
