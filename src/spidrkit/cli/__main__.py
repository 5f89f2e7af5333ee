"""python -m spidrkit.cli (also: torchrun --nproc-per-node N -m spidrkit.cli pretrain ...)."""

import sys

from spidrkit.cli import main

sys.exit(main())
