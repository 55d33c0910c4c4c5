#!/usr/bin/python3 -I
# `hearth` in Hearth's image: Debian's Python with Hearth and its dependencies in /opt/hearth/site
# (installed with pip --target, so the image needs no virtualenv). Copied to /usr/local/bin/hearth by both
# recipes: Containerfile, and devcluster/image.py for the local cluster.
import sys

sys.path.insert(0, "/opt/hearth/site")
from hearth.cli import main

sys.exit(main())
