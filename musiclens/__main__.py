import sys

from musiclens.cli import main

sys.exit(main())
