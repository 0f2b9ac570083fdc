"""A null client: says ``ready`` claiming both roles, then does nothing at all until shutdown.

Every C-* rule it is checked on must come out INCONCLUSIVE or FAIL: it exercises nothing.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    ready = {"obs": "ready", "name": "null-ready-only", "roles": ["signalr", "polling"]}
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        if line.strip() and json.loads(line).get("cmd") == "shutdown":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
