"""imagehub reads OpenStack's client configuration exactly as openstacksdk does.

Every case of ``tests/openstack_corpus.py`` is resolved twice: by imagehub, in this
process, and by openstacksdk's own ``OpenStackConfig().get_one(...)``, in a separate
process (``tests/openstack_oracle.py``) that sees only the case's files, environment and
working directory. The two must agree on everything imagehub uses; configurations
imagehub refuses must raise a ConfigError naming the key. The ``login`` cases then log in
to the real Keystone the suite starts and list images from the real Glance.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagehub import ConfigError
from imagehub.backends.glance import GlanceManager
from imagehub.backends.glance.auth import SDK_OPTION_NAMES, resolve_cloud
from imagehub.backends.glance.clientfiles import search_dirs
from imagehub.backends.glance.clouds import INFERRED, OpenStackClientConfig, ResolvedCloud
from imagehub.cli import main
from tests.openstack_corpus import CASES, Case
from tests.servers.openstack import OpenStackCloud, password_session

pytest.importorskip("openstack.config", reason="openstacksdk (a test dependency) is the oracle")

ORACLE = Path(__file__).with_name("openstack_oracle.py")
OFFLINE = [c for c in CASES if not c.login]
LOGIN = [c for c in CASES if c.login]


def _subst(value: Any, subs: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, real in subs.items():
            value = value.replace("{" + key + "}", real)
        return value
    if isinstance(value, dict):
        return {k: _subst(v, subs) for k, v in value.items()}
    if isinstance(value, list):
        return [_subst(v, subs) for v in value]
    return value


def lay_out(case: Case, root: Path, subs: dict[str, str]) -> tuple[dict[str, str], Path]:
    """The case's files under ``root``; returns its whole environment and its cwd."""
    subs = {**subs, "tmp": str(root)}
    for folder in ("cwd", "home", "site"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for rel, content in case.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _subst(content, subs)
        path.write_text(json.dumps(data) if rel.endswith(".json") else yaml.safe_dump(data))
    env = {"HOME": str(root / "home"), "XDG_CONFIG_DIRS": str(root / "site"),
           "PATH": os.environ.get("PATH", "")}
    env.update(_subst(case.env, subs))
    return env, root / "cwd"


def sdk_kwargs(case: Case, with_inferred: bool = True) -> dict[str, Any]:
    kwargs = {SDK_OPTION_NAMES[k]: v for k, v in case.options.items()}
    if case.infer and with_inferred:
        kwargs["auth_type"] = case.infer
    return kwargs


def run_oracle(cases: list[Case], root: Path, subs: dict[str, str]) -> dict[str, Any]:
    batch = []
    for case in cases:
        env, cwd = lay_out(case, root / case.id, subs)
        batch.append({"id": case.id, "env": env, "cwd": str(cwd), "cloud": case.cloud,
                      "kwargs": sdk_kwargs(case)})
        if case.infer:  # what openstacksdk does without being told the auth_type
            batch.append({**batch[-1], "id": case.id + "#plain",
                          "kwargs": sdk_kwargs(case, with_inferred=False)})
    done = subprocess.run([sys.executable, str(ORACLE)], input=json.dumps(batch),
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results: dict[str, Any] = json.loads(done.stdout)
    return results


@contextlib.contextmanager
def case_environment(case: Case, root: Path, subs: dict[str, str]) -> Iterator[None]:
    """This process's environment and cwd as the oracle saw them, restored afterwards."""
    env, cwd = lay_out(case, root / case.id, subs)
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        mp.chdir(cwd)
        yield


def imagehub_resolves(case: Case) -> ResolvedCloud:
    return resolve_cloud({"cloud": case.cloud, **case.options})


def assert_same(mine: ResolvedCloud, sdk: dict[str, Any], case: Case) -> None:
    assert "error" not in sdk, f"openstacksdk refused {case.id}: {sdk.get('error')}"
    got = {
        "auth_type": mine.auth_type, "auth": dict(mine.auth), "region_name": mine.region_name,
        "interface": mine.interface, "endpoint_override": mine.endpoint_override,
        "image_api_version": mine.image_api_version,
        "identity_api_version": mine.identity_api_version, "verify": mine.verify,
        "cert": list(mine.cert) if isinstance(mine.cert, tuple) else mine.cert,
        "api_timeout": mine.api_timeout,
    }
    assert got == {k: sdk[k] for k in got}


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("osconf")
    return root, run_oracle(OFFLINE, root, {})


def test_corpus_is_broad() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    assert sum(1 for c in CASES if c.refused) >= 8
    assert {c.infer for c in CASES} >= {"token", "v3applicationcredential", "none"}


@pytest.mark.parametrize("case", OFFLINE, ids=[c.id for c in OFFLINE])
def test_resolves_as_openstacksdk(case: Case, oracle: tuple[Path, dict[str, Any]]) -> None:
    root, results = oracle
    sdk = results[case.id]
    with case_environment(case, root, {}):
        assert search_dirs() == sdk["searched"]
        if case.refused:
            with pytest.raises(ConfigError) as info:
                imagehub_resolves(case)
            assert info.value.key == case.refused, str(info.value)
            assert repr(case.refused) in str(info.value)
            if case.sdk == "fails":
                assert "error" in sdk, sdk
            elif case.sdk == "resolves":
                assert "error" not in sdk, sdk
            return
        mine = imagehub_resolves(case)
        files = OpenStackClientConfig()
    assert_same(mine, sdk, case)
    assert files.config_path == sdk["config_file"]
    assert files.secure_path == sdk["secure_file"]
    if case.infer:
        assert mine.sources["auth_type"] == INFERRED
        assert "error" in results[case.id + "#plain"], "openstacksdk now infers it too"
    else:
        assert mine.sources["auth_type"] != INFERRED
    assert sorted(mine.ignored) == sorted(case.ignored)
    described = json.dumps(mine.describe())
    for secret in ("s3cret", '"tok"', '"sec"', '"other"'):
        assert secret not in described


def test_each_value_names_its_file(oracle: tuple[Path, dict[str, Any]]) -> None:
    root, _ = oracle
    case = next(c for c in CASES if c.id == "secure-file-var-deep")
    with case_environment(case, root, {}):
        mine = imagehub_resolves(case)
    base = root / case.id
    assert mine.sources["auth.password"] == str(base / "elsewhere/sec.yaml")
    assert mine.sources["region_name"] == str(base / "elsewhere/sec.yaml")
    assert mine.sources["auth.auth_url"] == str(base / "cwd/clouds.yaml")
    assert mine.sources["interface"] == str(base / "cwd/clouds.yaml")
    case = next(c for c in CASES if c.id == "profile")
    with case_environment(case, root, {}):
        mine = imagehub_resolves(case)
    assert mine.sources["auth.auth_url"].startswith(
        str(root / case.id / "home/.config/openstack/clouds-public.yaml"))
    assert "profile 'acme'" in mine.sources["region_name"]
    assert mine.sources["auth.username"] == str(root / case.id / "cwd/clouds.yaml")


def test_unparsable_file_is_refused_not_skipped(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "clouds.yaml"
    bad.write_text("clouds: {a: [unclosed\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(bad))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        OpenStackClientConfig()
    assert info.value.path == str(bad)


def test_clouds_command_shows_resolution_without_secrets(
        oracle: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = oracle
    case = next(c for c in CASES if c.id == "secure-merge")
    config = root / "imagehub.yaml"
    config.write_text(yaml.safe_dump({"clouds": {
        "os": {"backend": "openstack", "cloud": "a", "region_name": "R9"},
        "broken": {"backend": "glance", "cloud": "missing"},
        "inline": {"backend": "glance", "auth_type": "password", "auth": {
            "auth_url": "https://k.example/v3", "username": "u", "project_name": "p"},
                   "password_env": "INLINE_PW"}}}))
    with case_environment(case, root, {}):
        os.environ["INLINE_PW"] = "inline-s3cret"
        with contextlib.suppress(SystemExit):
            main(["--config", str(config), "--format", "json", "clouds"])
    out = capsys.readouterr().out
    assert "s3cret" not in out
    rows = {r["name"]: r for r in json.loads(out)}
    got = rows["os"]["resolved"]
    assert got["auth_url"] == "https://keystone.example:5000/v3"
    assert got["username"] == "alice" and got["user_domain_name"] == "Default"
    assert got["project_name"] == "demo" and got["project_domain_name"] == "Default"
    assert got["auth_type"] == "password" and got["secrets_set"] == ["password"]
    assert got["region_name"] == "R9" and got["interface"] == "public"
    assert got["sources"]["auth.password"].endswith("home/.config/openstack/secure.yaml")
    assert got["sources"]["auth.username"].endswith("cwd/clouds.yaml")
    assert got["sources"]["region_name"] == "imagehub options"
    assert "'cloud'" in rows["broken"]["problem"]
    assert rows["inline"]["resolved"]["secrets_set"] == ["password"]


@pytest.fixture(scope="module")
def real(openstack_cloud: OpenStackCloud,
         tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Any]:
    user = openstack_cloud.project("alpha")
    keystone = password_session(openstack_cloud, user)
    appcred = keystone.post(
        f"{openstack_cloud.auth_url.rstrip('/')}/users/{user.user_id}/application_credentials",
        json={"application_credential": {"name": f"oracle-{os.getpid()}-{id(keystone)}"}},
    ).json()["application_credential"]
    subs = {"auth_url": openstack_cloud.auth_url, "username": user.username,
            "password": user.password, "project": user.project_name,
            "region": openstack_cloud.region_name, "glance": openstack_cloud.glance_url,
            "token": keystone.get_token(), "appcred_id": appcred["id"],
            "appcred_secret": appcred["secret"]}
    root = tmp_path_factory.mktemp("oslogin")
    return root, subs, run_oracle(LOGIN, root, subs)


@pytest.mark.parametrize("case", LOGIN, ids=[c.id for c in LOGIN])
def test_logs_in_to_real_keystone(case: Case, real: tuple[Path, dict[str, str], Any],
                                  openstack_cloud: OpenStackCloud) -> None:
    root, subs, results = real
    with case_environment(case, root, subs):
        mine = imagehub_resolves(case)
        manager = GlanceManager.from_options({"cloud": case.cloud, **case.options},
                                             cloud=case.id)
    assert_same(mine, results[case.id], case)
    assert (mine.sources["auth_type"] == INFERRED) == bool(case.infer)
    try:
        assert manager.project_id == openstack_cloud.project("alpha").project_id
        manager.list(limit=1)
    finally:
        manager.close()


@pytest.mark.parametrize(("cloud", "key"), [
    ({"auth": None}, "auth"),
    ({"auth": "alice"}, "auth"),
    ({"auth": {"auth_url": ["https://k.example/v3"]}}, "auth.auth_url"),
    ({"auth": {"auth_url": "https://k.example/v3"}, "profile": {"name": "x"}}, "profile"),
    ({"auth": {"auth_url": "https://k.example/v3"}, "regions": [{"name": "r", "values": 1}]},
     "regions"),
    ({"auth": {"auth_url": "https://k.example/v3"}, "cacert": {"path": "/ca"}}, "cacert"),
    ({"auth": {"auth_url": "https://k.example/v3", "username": "u", "password": "p"},
      "api_timeout": "soon"}, "api_timeout"),
])
def test_values_of_the_wrong_kind_are_config_errors(cloud: dict[str, Any], key: str,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Hand-edited files go wrong in every way: always a ConfigError naming the key."""
    (tmp_path / "clouds.yaml").write_text(yaml.safe_dump({"clouds": {"a": cloud}}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in [k for k in os.environ if k.startswith("OS_")]:
        monkeypatch.delenv(var)
    with pytest.raises(ConfigError) as info:
        resolve_cloud({"cloud": "a"})
    assert info.value.key == key, str(info.value)


def test_resolving_never_imports_openstacksdk(oracle: tuple[Path, dict[str, Any]]) -> None:
    """openstacksdk is a test dependency only: its import costs more than the CLI budget."""
    root, _ = oracle
    case = next(c for c in CASES if c.id == "profile")
    env, cwd = lay_out(case, root / case.id, {})
    code = ("import sys; from imagehub.backends.glance.auth import resolve_cloud; "
            "resolve_cloud({'cloud': 'a'}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('openstack', 'openstacksdk', 'platformdirs')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_region_values_name_the_file_that_lists_them(
        oracle: tuple[Path, dict[str, Any]]) -> None:
    # The region was picked by an imagehub option, but its values come from clouds.yaml;
    # they used to be attributed to "imagehub options".
    root, _ = oracle
    case = next(c for c in CASES if c.id == "regions-values")
    with case_environment(case, root, {}):
        mine = imagehub_resolves(case)
    listed = str(root / case.id / "cwd/clouds.yaml")
    assert mine.sources["interface"] == f"{listed} (region 'r2' values)"
    assert mine.sources["endpoint_override"] == f"{listed} (region 'r2' values)"
    assert mine.sources["region_name"] == "imagehub options"
