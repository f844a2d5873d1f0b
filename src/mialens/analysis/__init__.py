"""Explain leakage: which samples leak, and how that relates to their outlierness.

* :mod:`~mialens.analysis.vulnerability`: per-sample vulnerability across targets;
* :mod:`~mialens.analysis.outliers`: outlierness measures in input, feature and logit space;
* :mod:`~mialens.analysis.significance`: correlation, AUC and group tests with intervals;
* :mod:`~mialens.analysis.epochs`: per-epoch outputs of retrained models;
* :mod:`~mialens.analysis.explain`: the analysis of an audit (``mialens analyze``);
* :mod:`~mialens.analysis.summary`: what it concludes, typed (``analysis/summary.json``);
* :mod:`~mialens.analysis.study`: what a grid of audits over training recipes shows
  (``mialens study``).

The analysis returns data; :mod:`mialens.workflows` writes it and :mod:`mialens.report`
presents it.
"""
