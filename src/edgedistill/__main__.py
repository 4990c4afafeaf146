from edgedistill.cli import main

raise SystemExit(main())
