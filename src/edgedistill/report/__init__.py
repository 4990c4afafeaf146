"""Human-readable comparison built from metrics.json alone: the terminal table and report.md."""
from edgedistill.report.markdown import comparison_table, write_report_md

__all__ = ["comparison_table", "write_report_md"]
