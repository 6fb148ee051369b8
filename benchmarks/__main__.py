"""``python -m benchmarks TASK [options]``: train one cell.

Exit codes: 0 done (or already done), 75 preempted (a relaunch resumes),
1 failed (error.json in the run directory), 2 bad input (nothing written).
"""

from __future__ import annotations

import sys
import traceback

from .config import ConfigError, parse_argv

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_PREEMPTED = 0, 1, 2, 75


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = parse_argv(argv)
        from .engine import Collapsed, NonFiniteLoss, Preempted, train  # torch import after parsing: fast --help

        try:
            train(cfg)
        except Preempted as stop:
            print(f"preempted: {stop}", file=sys.stderr, flush=True)
            return EXIT_PREEMPTED
        except (NonFiniteLoss, Collapsed) as err:
            print(f"failed: {err}", file=sys.stderr, flush=True)
            return EXIT_FAILED
    except ConfigError as err:
        print(f"python -m benchmarks: error: {err}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    except Exception:
        traceback.print_exc()
        return EXIT_FAILED
    return EXIT_DONE


if __name__ == "__main__":
    sys.exit(main())
