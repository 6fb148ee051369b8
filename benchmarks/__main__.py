"""``python -m benchmarks TASK [options]``: train one cell.

Exit codes: 0 done (or already done), 75 preempted (a relaunch resumes),
1 failed (error.json in the run directory, when it can be written), 2 bad input
(nothing written), 3 busy (another engine holds the cell; nothing written).
"""

from __future__ import annotations

import sys
import traceback

from .config import ConfigError, parse_argv

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_BUSY, EXIT_PREEMPTED = 0, 1, 2, 3, 75


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = parse_argv(argv)
        from .engine import NonFiniteLoss, Preempted, train  # torch import after parsing: fast --help
        from .rundir import LockHeld, WriteFailed

        try:
            train(cfg)
        except Preempted as stop:
            print(f"preempted: {stop}", file=sys.stderr, flush=True)
            return EXIT_PREEMPTED
        except LockHeld as held:
            print(f"python -m benchmarks: busy: another engine works in this cell ({held}); "
                  "nothing was written", file=sys.stderr, flush=True)
            return EXIT_BUSY
        except (NonFiniteLoss, WriteFailed) as err:
            # One line: a write failure (full disk, read-only) needs no traceback.
            print(f"python -m benchmarks: failed: {err}", file=sys.stderr, flush=True)
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
