"""Shared test setup: run from the project root so host.json and the function folders resolve."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.chdir(ROOT)
