import sys

from modicseg.cli import main

sys.exit(main())
