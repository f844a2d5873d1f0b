"""Explain leakage: which samples leak, and how that relates to their outlierness.

* :mod:`~mialens.analysis.vulnerability`: per-sample vulnerability across targets;
* :mod:`~mialens.analysis.outliers`: outlierness measures in input, feature and logit space;
* :mod:`~mialens.analysis.statistics`: correlation, AUC and group tests with intervals;
* :mod:`~mialens.analysis.canaries`: injected canaries and their leakage;
* :mod:`~mialens.analysis.epochs`: per-epoch outputs of retrained models;
* :mod:`~mialens.analysis.figures`: the figures of the analysis report;
* :mod:`~mialens.analysis.run`: the analysis of an audit (``mialens analyze``);
* :mod:`~mialens.analysis.study`: a grid of audits over training recipes (``mialens study``).
"""
