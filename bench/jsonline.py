"""The benchmarks' output: one JSON line on stdout, optionally appended to a results file too."""

from __future__ import annotations

import json
import time


def emit(result: dict, json_out: str | None) -> None:
    """Stamp `result` with the UTC date, print it as one JSON line, append it to `json_out` if given."""
    result["date_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = json.dumps(result)
    if json_out:
        with open(json_out, "a") as f:
            f.write(line + "\n")
    print(line, flush=True)
