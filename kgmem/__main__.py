"""`python -m kgmem` is the `kgmem` command."""
from .cli import main

main()
