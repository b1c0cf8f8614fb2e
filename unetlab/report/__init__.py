"""Tables, plots and findings from the ``results.csv`` files of many runs (``unetlab-report DIR...``).

``make_report`` and ``ReportError`` are imported on first use, so that ``unetlab.report.options`` (the ``report.*``
keys, read by ``unetlab-report --help``) loads no torch."""

__all__ = ["make_report", "ReportError"]


def __getattr__(name: str):
    if name == "make_report":
        from unetlab.report.build import make_report

        return make_report
    if name == "ReportError":
        from unetlab.report.collect import ReportError

        return ReportError
    raise AttributeError(f"module 'unetlab.report' has no attribute {name!r}")
