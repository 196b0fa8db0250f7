"""Reporting: reads result files, writes Markdown and PNG charts, checks artefacts. Pure: it
starts no process and imports none of the harness's process code (a test says so).

* :mod:`~bench.reporting.report`: ``report.md``, assembled;
* :mod:`~bench.reporting.suite`: the suite's sections and charts;
* :mod:`~bench.reporting.load`: the wrk benchmarks' sections and summaries;
* :mod:`~bench.reporting.hardening`: ``hardening.md``;
* :mod:`~bench.reporting.summary`, :mod:`~bench.reporting.agreement`,
  :mod:`~bench.reporting.targets`: the arithmetic behind the tables;
* :mod:`~bench.reporting.findings`: what investigations found, as the report states it;
* :mod:`~bench.reporting.charts`, :mod:`~bench.reporting.markdown`: drawing and formatting;
* :mod:`~bench.reporting.check`: ``python -m bench.check``.
"""
