"""``python -m hubmon``: the command line of :mod:`hubmon.cli`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
