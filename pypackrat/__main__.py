import sys

from pypackrat.cli import main

sys.exit(main())
