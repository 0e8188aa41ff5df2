"""`python -m runner ...`: the edgejar command line."""

import sys

from runner.cli import main

sys.exit(main())
