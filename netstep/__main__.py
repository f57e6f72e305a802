import gc
import sys

from netstep.cli import main
from netstep.session import whole_process

whole_process()
status = main()
# The process ends here, and the OS takes back its memory: freezing every object spares
# the interpreter's last collections on the way out (~40 ms once pyroute2 is loaded).
gc.freeze()
sys.exit(status)
