"""Everyone told (#23 item 3): `yolo-retrain notify` refuses what it cannot wire. (The message of a rejected retrain
reaching a webhook through the automation: test_lifecycle_flow.py, whose history rejects one.)"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from yolo_retrain.cli import app

pytestmark = pytest.mark.e2e


def test_notify_refuses_what_it_cannot_wire(prefect_server):
    runner = CliRunner()
    for args, said in (
        (["notify"], "give either --webhook URL or --block TYPE/NAME"),
        (["notify", "--webhook", "ftp://example.org/x"], "--webhook 'ftp://example.org/x': not an http(s) URL"),
        (["notify", "--block", "custom-webhook/no-such-block"], "--block 'custom-webhook/no-such-block': no such block"),
    ):
        result = runner.invoke(app, args)
        last = result.output.strip().splitlines()[-1]
        assert result.exit_code == 2 and last.startswith("error: ") and said in last, result.output
