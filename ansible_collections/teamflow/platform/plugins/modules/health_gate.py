#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: TeamFlow platform engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: health_gate
short_description: Wait until HTTP health checks pass several times in a row, or fail with the reason
version_added: 0.1.0
description:
  - Polls one or more URLs in rounds, every O(interval) seconds, until O(passes) consecutive rounds pass or
    O(timeout) seconds have gone by. A round passes when every URL passes; a URL passes when the response has
    one of the O(expected_status) codes, its JSON body has every field of O(expected_json) with the given
    value, and it came within O(max_latency_ms).
  - Returns every sample (URL, round, status, latency, error, reason). On failure the message names the URL
    and the check that failed, and RV(last_body) holds the body of the last failing response.
  - Meant as the gate of a rolling deploy - a host goes back into the load balancer only when it has proved
    healthy for a while, not on one lucky response - and as a check after any change.
  - Read-only, so it runs the same in check mode.
author:
  - TeamFlow platform engineering (@teamflow)
options:
  url:
    description: URLs to check, each in every round.
    type: list
    elements: str
    required: true
    aliases: [urls]
  method:
    description: HTTP method of the checks.
    type: str
    default: GET
    choices: [GET, HEAD]
  headers:
    description: Request headers (for example C(Host), or an C(X-Request-ID) to find the checks in the logs).
    type: dict
    default: {}
  expected_status:
    description: Status codes that pass.
    type: list
    elements: int
    default: [200]
  expected_json:
    description:
      - Fields the JSON body must have, by dotted path (C(checks.database), C(items.0.id)), with the value each
        must have. Values compare as JSON values; a string expected value matches the text of a number.
    type: dict
    default: {}
  max_latency_ms:
    description: Latency ceiling of a passing response, in milliseconds (from the request's start to the body's end).
    type: float
  passes:
    description: Consecutive passing rounds needed.
    type: int
    default: 3
  interval:
    description: Seconds between the starts of two rounds' waits (after a round, the module sleeps this long).
    type: float
    default: 2
  timeout:
    description: Seconds after which the gate fails if it has not passed.
    type: float
    default: 120
  request_timeout:
    description: Seconds one request may take before it counts as failed.
    type: float
    default: 5
  validate_certs:
    description: Verify HTTPS certificates.
    type: bool
    default: true
  ca_path:
    description: PEM file of the CA to verify HTTPS certificates with, instead of the system's.
    type: path
notes:
  - Redirects are not followed; a redirect is a status like any other.
seealso:
  - module: ansible.builtin.uri
"""

EXAMPLES = r"""
- name: Gate the host on its new release
  teamflow.platform.health_gate:
    url: http://{{ teamflow_private_address }}:8000/health
    expected_json:
      status: ok
      database: ok
      redis: ok
      version: "{{ app_version }}"
    max_latency_ms: 1000
    passes: 3
    interval: 2
    timeout: 90
  delegate_to: "{{ groups['web'][0] }}"

- name: Gate the public endpoint through the load balancer
  teamflow.platform.health_gate:
    url:
      - https://teamflow.example.com/health
      - https://teamflow.example.com/
    expected_status: [200]
    passes: 5
    ca_path: /etc/ssl/certs/teamflow-ca.pem
"""

RETURN = r"""
passed:
  description: Whether the gate passed.
  type: bool
  returned: always
rounds:
  description: Rounds of checks made.
  type: int
  returned: always
consecutive_passes:
  description: Passing rounds in a row at the end.
  type: int
  returned: always
elapsed:
  description: Seconds from the first check to the decision.
  type: float
  returned: always
samples:
  description: Every check made, in order.
  type: list
  elements: dict
  returned: always
  contains:
    url:
      description: The URL checked.
      type: str
    round:
      description: The round it belongs to (from 1).
      type: int
    status:
      description: The HTTP status, or null when no response came.
      type: int
    latency_ms:
      description: Milliseconds from the request's start to the end of the body.
      type: float
    passed:
      description: Whether this check passed.
      type: bool
    reason:
      description: Why it failed (null when it passed).
      type: str
    error:
      description: The connection or timeout error, when no response came.
      type: str
    at:
      description: Seconds since the gate started.
      type: float
  sample:
    - {url: "http://10.0.1.11:8000/health", round: 1, status: 503, latency_ms: 12.4, passed: false,
       reason: "status is \"error\", expected \"ok\"", error: null, at: 0.013}
reason:
  description: "The last failed check, as C(URL: reason) (null when the gate passed after no failure)."
  type: str
  returned: always
last_body:
  description: Body of the last failing response (its first 4 KiB).
  type: str
  returned: always
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.urls import open_url
from ansible_collections.teamflow.platform.plugins.module_utils import health

from urllib.error import HTTPError, URLError


def make_fetch(module):
    params = module.params

    def fetch(url):
        started = time.monotonic()
        try:
            response = open_url(
                url, method=params["method"], headers=params["headers"], timeout=params["request_timeout"],
                validate_certs=params["validate_certs"], ca_path=params["ca_path"], follow_redirects="none",
            )
            status, body = response.getcode(), response.read()
        except HTTPError as err:
            status = err.code
            try:
                body = err.read()
            except Exception:  # noqa: BLE001 - a body we cannot read is an empty body
                body = b""
        except (URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            return None, "", (time.monotonic() - started) * 1000, "%s: %s" % (type(err).__name__, to_text(reason))
        return status, to_text(body, errors="surrogate_or_replace"), (time.monotonic() - started) * 1000, None

    return fetch


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="list", elements="str", required=True, aliases=["urls"]),
            method=dict(type="str", default="GET", choices=["GET", "HEAD"]),
            headers=dict(type="dict", default={}),
            expected_status=dict(type="list", elements="int", default=[200]),
            expected_json=dict(type="dict", default={}),
            max_latency_ms=dict(type="float"),
            passes=dict(type="int", default=3, no_log=False),
            interval=dict(type="float", default=2),
            timeout=dict(type="float", default=120),
            request_timeout=dict(type="float", default=5),
            validate_certs=dict(type="bool", default=True),
            ca_path=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not params["url"]:
        module.fail_json(msg="url is empty; give at least one URL to check")
    if params["passes"] < 1:
        module.fail_json(msg="passes is %d; it must be 1 or more" % params["passes"])
    if params["interval"] < 0 or params["timeout"] <= 0 or params["request_timeout"] <= 0:
        module.fail_json(msg="interval must not be negative, timeout and request_timeout must be positive")

    def check(status, body, latency_ms):
        return health.evaluate(status, body, latency_ms, params["expected_status"], params["expected_json"],
                               params["max_latency_ms"])

    result = health.run_gate(params["url"], make_fetch(module), check, params["passes"], params["interval"],
                             params["timeout"], time.monotonic, time.sleep)
    result.pop("last_url", None)
    result["changed"] = False
    if not result["passed"]:
        module.fail_json(msg="health gate failed after %.1f s (%d rounds): %s" % (result["elapsed"], result["rounds"], result["reason"]),
                         **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
