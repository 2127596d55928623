"""`python -m backend.provision [--dry-run]`: provision the SIP lines."""

import sys

from backend.provision.cli import main

if __name__ == "__main__":
    sys.exit(main())
