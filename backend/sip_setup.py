"""Deprecated old name of `python -m backend.provision` (now the package backend/provision/)."""

import sys

from backend.provision.cli import main

if __name__ == "__main__":
    print("note: `python -m backend.sip_setup` is now `python -m backend.provision`", file=sys.stderr)
    sys.exit(main(prog="python -m backend.sip_setup"))
