"""Real printer software for the ``printers`` tests: OctoPrint and PrusaLink 0.8 run on loopback.

Each program lives in its own virtualenv under ``<repo>/.printer-venvs`` (built by ``setup_venvs.sh``) and is
started as a separate process group, so its pinned dependencies never meet farmsync's.
"""
