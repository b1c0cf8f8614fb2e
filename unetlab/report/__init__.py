"""Tables, plots and findings from the ``results.csv`` files of many runs (``unetlab-report DIR...``)."""

from unetlab.report.build import make_report
from unetlab.report.collect import ReportError

__all__ = ["make_report", "ReportError"]
