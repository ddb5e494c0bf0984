"""`python -m kgmem` is the `kgmem` command."""
from .cli import main

# Guarded: ingest workers are spawned processes, which import the main module again.
if __name__ == "__main__":
    main()
