"""The harness's own helpers (tests/conftest.py): what a failed scenario shows."""

import pytest

from conftest import tail

pytestmark = pytest.mark.static

RUN = """PLAY [Converge] ***
TASK [Install a thing] ***
fatal: [db1]: FAILED! =>
    msg: 'File not found: /etc/optional'
...ignoring
TASK [Start the server] ***
fatal: [db1]: FAILED! =>
    msg: 'Unable to start service postgresql'
PLAY RECAP ***
""" + "destroy line\n" * 200


def test_a_failed_scenario_shows_its_failed_task_before_the_tail():
    shown = tail(RUN, 10)
    assert shown.startswith("--- first failures ---\nTASK [Start the server] ***\nfatal: [db1]")
    assert "Unable to start service postgresql" in shown
    assert shown.endswith("destroy line")


def test_a_failure_that_ignore_errors_let_through_is_not_shown():
    assert "File not found" not in tail(RUN, 10)


def test_a_run_without_failures_shows_the_tail_only():
    assert tail("ok\n" * 100, 5) == "ok\nok\nok\nok\nok"
