"""``python -m partax.cli ...``: the same as the ``partax`` command."""

import sys

from partax.cli import main

if __name__ == "__main__":
    sys.exit(main())
