"""`python -m bertbench` runs the same CLI as the `bertbench` console script."""

import sys

from bertbench.cli import main

sys.exit(main())
