import sys

from pixelwave.cli import main

sys.exit(main())
