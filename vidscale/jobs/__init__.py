"""Drivers: what runs many upscale jobs — a batch of inputs, the watch folder, a Ray cluster.

They sit over :mod:`vidscale.pipeline` (one job) and :mod:`vidscale.work` (plan, job store);
nothing below imports them.
"""
