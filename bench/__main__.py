import sys
from pathlib import Path

# `make bench` exports PYTHONPATH=layers/shared/python; a bare `python -m bench` finds the layer all the same.
_LAYER = str(Path(__file__).resolve().parent.parent / "layers" / "shared" / "python")
if _LAYER not in sys.path:
    sys.path.insert(0, _LAYER)

from bench.run import main  # noqa: E402

raise SystemExit(main())
