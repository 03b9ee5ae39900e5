"""Label Studio in the loop: the champion's boxes as pre-annotations, reviewers' annotations as corrections.

One job a module: ``convert`` (rectanglelabels in percent <-> YOLO boxes, labels by name), ``label_config``
(the project's labelling config), ``diff`` (what the reviewer changed against the champion's prediction),
``champion`` (the current champion's predictions), ``client`` (task images from Label Studio), ``events``
(a webhook event -> a correction), ``backend`` (the HTTP endpoints Label Studio calls).
"""
