"""`python -m roomkeeper`."""

from roomkeeper.cli import main

raise SystemExit(main())
