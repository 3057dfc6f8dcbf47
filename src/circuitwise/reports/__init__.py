"""Stage 8: the self-contained HTML report and results.json, and every result's notebook display.

Importing this package registers the notebook renderers (``display``) with ``circuitwise.types``,
which the result types below reports/ display through; ``import circuitwise`` imports it.
"""

from circuitwise.reports import display
from circuitwise.reports.build import build_page, write_report

__all__ = ["build_page", "display", "write_report"]
