"""Weights: downloading and caching (:mod:`act_zoo.hub.download`, :mod:`act_zoo.hub.cache`)."""
