"""Every page, template and figure; the report only reads results and writes nothing.

- :mod:`~mialens.report.environment`: the one Jinja2 environment (``templates/``) and ``render``
- :mod:`~mialens.report.format`: the number, percentage, p-value and date formatters
- :mod:`~mialens.report.audit_page`, :mod:`~mialens.report.analysis_page`,
  :mod:`~mialens.report.study_page`, :mod:`~mialens.report.defenses_page`: the context of
  each page
- :mod:`~mialens.report.plots`, :mod:`~mialens.report.analysis_plots`: the figures as PNG;
  :mod:`~mialens.report.analysis_figures` picks the analysis page's figures and their values
- :mod:`~mialens.report.tables`: the CSV tables (``samples.csv``)
- ``templates/``: the pages, each extending ``_page.html`` (head, ``_style.html``, body,
  footer); ``_figures.html`` (a figure and the Figures section) and ``_captions.html``
  (every figure's title, alt text and caption)
"""
