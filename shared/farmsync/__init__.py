"""farmsync: keep a 3D-print farm's systems in step.

Prints recorded by Bambuddy become InvenTree stock, filament spools stay matched between the two, and a master
folder of G-code is mirrored onto every printer. The package is the one library behind every entry point in
``functions/main.py`` and the ``farmsync`` command.
"""

__version__ = "0.1.0"
