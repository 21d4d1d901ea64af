"""The poisoning paper's analyses (its §5): how the training-free metrics move under poisoning
(``sensitivity``) and what searching on out-of-distribution data gives (``ood``)."""
