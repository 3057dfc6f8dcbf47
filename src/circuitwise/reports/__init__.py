"""Stage 8: the self-contained HTML report and results.json."""

from circuitwise.reports.build import build_page, write_report

__all__ = ["build_page", "write_report"]
