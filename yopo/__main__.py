import sys

from yopo.cli import main

sys.exit(main())
