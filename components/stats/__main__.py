import sys

from components.stats.cli import main

sys.exit(main())
