"""``python -m callxml.cli``: the same command line as the ``callxml`` script."""

from callxml.cli import main

main()
