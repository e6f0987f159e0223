"""Make the harness beside these tests importable (``baresip_peer``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
