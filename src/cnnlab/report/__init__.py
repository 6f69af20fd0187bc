"""Reports: one self-contained HTML file of runs and experiments (`cnnlab report`)."""

from cnnlab.report.html import build_report

__all__ = ["build_report"]
