import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))

from baresip_peer import baresip  # noqa: F401  (the fixture)
