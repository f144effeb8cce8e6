"""Where Chromium is on this machine: CHROMIUM_PATH, else the first of the usual names on PATH."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Debian's package installs `chromium`; Ubuntu's and older ones `chromium-browser`; Google's `google-chrome`.
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> Path | None:
    configured = os.environ.get("CHROMIUM_PATH", "").strip()
    if configured:
        path = Path(configured)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


if __name__ == "__main__":  # the Makefile's `browser` target asks this
    found = find_chromium()
    print(found or "")
    raise SystemExit(0 if found else 1)
