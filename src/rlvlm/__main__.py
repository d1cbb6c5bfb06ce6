from rlvlm.cli import main

raise SystemExit(main())
