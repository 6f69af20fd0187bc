from cnnlab.cli.main import main

raise SystemExit(main())
