#!/usr/bin/env python3
"""The session explorer as a script: the twin of notebooks/session_explorer.ipynb.

Same API (devbot_explorer.explorer.SessionExplorer), same tables and figures, written to a
folder (summary.md + PNGs, playback.gif) instead of shown inline. Also available as
``devbot explore``. Run with the project's venv:

    .venv/bin/python scripts/session_explorer.py --help
    .venv/bin/python scripts/session_explorer.py --list
    .venv/bin/python scripts/session_explorer.py --session toroidal_dot/<session> --frame 40 \\
        --out /tmp/explore
    .venv/bin/python scripts/session_explorer.py --demo /tmp/demo --session toroidal_dot/demo-00 \\
        --frame 20 --train-autoencoder 0:40 --train-predictor 0:40 --steps 20 \\
        --save /tmp/demo/tuned --out /tmp/demo/report
"""

import sys

from devbot_explorer.explore_cli import main

if __name__ == '__main__':
    sys.exit(main())
