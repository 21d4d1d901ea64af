"""The poisoning paper's analyses (its §5) that are not plain search → train chains: the sensitivity
of the training-free metrics (``sensitivity``). Out-of-distribution search and the defended searches are
ordinary search → train trials (``suite/expand.py``), reported by ``report/ood.py`` and
``report/defended.py``; the countermeasures themselves are in ``naspoison/sanitize/``."""
