import sys

from runner.node.cli import main

sys.exit(main())
