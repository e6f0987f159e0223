"""Make the test-only helpers beside these tests importable (``media_srtp_reference``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
