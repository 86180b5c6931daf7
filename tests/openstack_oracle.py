"""Resolve OpenStack client configurations with openstacksdk itself: the test oracle.

Run as ``python -m tests.openstack_oracle`` with a JSON list of cases on stdin
(``{"id", "env", "cwd", "cloud", "kwargs"}``); prints one JSON object mapping each id to
what ``openstack.config.OpenStackConfig().get_one(cloud, **kwargs)`` resolved, or to
the error it raised.

openstacksdk computes its search path at import (from the cwd and environment), so each
case gets its environment and cwd first and then a fresh ``openstack.config.loader``.
A separate process keeps all of this away from the test process's own environment.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from typing import Any


def resolve(case: dict[str, Any]) -> dict[str, Any]:
    os.environ.clear()
    os.environ.update(case["env"])
    os.chdir(case["cwd"])
    import openstack.config
    from openstack.config import loader
    loader = importlib.reload(loader)
    openstack.config.OpenStackConfig = loader.OpenStackConfig  # type: ignore[misc]
    searched = list(loader.CONFIG_SEARCH_PATH)
    try:
        config = openstack.config.OpenStackConfig()
        region = config.get_one(case["cloud"], **case["kwargs"])
    except Exception as exc:  # noqa: BLE001 - the oracle reports whatever it raised
        return {"error": f"{type(exc).__name__}: {exc}", "searched": searched}
    verify, cert = region.get_requests_verify_args()
    timeout = region.config.get("api_timeout")
    identity = region.config.get("identity_api_version")
    return {
        "auth_type": region.config["auth_type"],
        "auth": dict(region.config["auth"]),
        "region_name": region.get_region_name("image") or None,
        "interface": region.get_interface("image"),
        "endpoint_override": region.get_endpoint("image"),
        "image_api_version": region.get_api_version("image"),
        "identity_api_version": str(identity) if identity is not None else None,
        "verify": verify,
        "cert": list(cert) if isinstance(cert, tuple) else cert,
        "api_timeout": float(timeout) if timeout else None,
        "config_file": config.config_filename,
        "secure_file": config.secure_config_filename,
        "searched": searched,
    }


def main() -> None:
    cases = json.load(sys.stdin)
    warnings.simplefilter("ignore")
    results = {case["id"]: resolve(case) for case in cases}
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
