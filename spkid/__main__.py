import sys

from spkid.app.cli import main

sys.exit(main())
