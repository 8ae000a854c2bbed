"""``python -m spkid``: the command line, also the entry point each ``torchrun`` rank runs."""
import os
import sys

from spkid.app.cli import main

status = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # A torchrun rank whose work is done: its process group is closed and every file it wrote is complete
    # (atomic, fsync'ed). Leave without the interpreter's shutdown, where a gloo/DDP thread still joinable
    # during C++ static destruction aborted a rank now and then ("terminate called without an active
    # exception", exit -6, roughly one `spkid train --devices 2` run in five on 2 CPU cores).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
sys.exit(status)
