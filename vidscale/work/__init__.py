"""The work layer the pipelines stand on: the plan of a job (geometry, chunks, tiles, cost) and
the job store that keeps finished chunks for a resume.

It sits under :mod:`vidscale.pipeline` and over ``media``/``model``; the drivers that run many
jobs (:mod:`vidscale.jobs`: batch, watch folder, cluster) sit over the pipelines.
"""
