"""Selection for review (#22): the champion picks which unlabelled images reviewers look at next.

One module per job: ``pool`` (images from folders, globs, list files), ``samples`` (the pool posted to the intake:
stored by content, capture rules and limits from ``capture``, retention), ``boxes`` (boxes by class name, IoU),
``scoring`` (uncertainty, class confusion, disagreement with the production model), ``diversity`` (a perceptual
hash, near-duplicates), ``score_pool`` (the champion over the pool, bounded memory), ``choose`` (budget, diversity,
class coverage), ``export`` (CSV), ``to_label_studio`` (tasks with the champion's predictions), ``contact_sheet``,
``record`` (the MLflow run of a selection), ``api`` (``POST /samples``), ``run`` (the whole selection).
"""
