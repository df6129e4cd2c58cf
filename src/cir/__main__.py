"""`python -m cir` runs the command line."""

import sys

from cir.cli import main

sys.exit(main())
