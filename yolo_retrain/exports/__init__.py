"""The champion in the formats production deploys (ONNX first), each checked against the ``.pt`` the gate judged.

- :mod:`.export`: one Ultralytics export per format, into a version's folder, never installing anything;
- :mod:`.agreement`: the export and the ``.pt`` on the holdout: matched boxes, class agreement, mAP difference;
- :mod:`.verify`: both for every format the settings name, the results logged with the registry version;
- :mod:`.champion_folder`: the local folder production reads (``models/champion/``), swapped atomically.
"""
