import sys

from netstep.cli import main

sys.exit(main())
