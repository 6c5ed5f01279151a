import sys

from promptloop_agents.cli.main import main

sys.exit(main())
