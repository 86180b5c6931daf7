"""OpenStack client configurations that imagehub must resolve as openstacksdk does.

Each case lays out files under a private folder (``cwd/``, ``home/`` which is $HOME,
``xdg/`` for $XDG_CONFIG_HOME when a case sets it, ``site/`` which is $XDG_CONFIG_DIRS),
sets environment variables, and names a cloud and imagehub options. ``{tmp}`` in a
value is that folder; ``{auth_url}``, ``{username}``, ``{password}``, ``{project}``,
``{region}``, ``{glance}``, ``{token}``, ``{appcred_id}`` and ``{appcred_secret}`` are the
real test Keystone's, for the cases that log in.
"""

from __future__ import annotations

import dataclasses
from typing import Any

KS = "https://keystone.example:5000/v3"
PW_AUTH = {"auth_url": KS, "username": "alice", "password": "s3cret",
           "project_name": "demo", "user_domain_name": "Default",
           "project_domain_name": "Default"}
REAL_AUTH = {"auth_url": "{auth_url}", "username": "{username}", "password": "{password}",
             "project_name": "{project}", "user_domain_name": "Default",
             "project_domain_name": "Default"}


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    files: dict[str, Any]
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    cloud: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the key imagehub's ConfigError must name, for configurations it refuses
    refused: str | None = None
    #: for refused cases: openstacksdk "fails" too, or "resolves" (and imagehub says why not)
    sdk: str = "same"
    #: the auth_type imagehub infers where openstacksdk, left at "password", fails
    infer: str | None = None
    #: keys reported as ignored (settings of other services)
    ignored: tuple[str, ...] = ()
    login: bool = False


def clouds(**entries: Any) -> dict[str, Any]:
    return {"clouds": entries}


def pw(**extra: Any) -> dict[str, Any]:
    return {"auth": dict(PW_AUTH), **extra}


CASES: list[Case] = [
    # -- where the files are found ------------------------------------------------------
    Case("cwd-file", {"cwd/clouds.yaml": clouds(a=pw(region_name="RegionOne"))},
         env={"OS_CLOUD": "a"}),
    Case("cwd-beats-home", {"cwd/clouds.yaml": clouds(a=pw(region_name="cwd")),
                            "home/.config/openstack/clouds.yaml": clouds(a=pw(
                                region_name="home"))}, cloud="a"),
    Case("xdg-config-home", {"xdg/openstack/clouds.yaml": clouds(a=pw(region_name="xdg")),
                             "home/.config/openstack/clouds.yaml": clouds(a=pw(
                                 region_name="home"))},
         env={"XDG_CONFIG_HOME": "{tmp}/xdg"}, cloud="a"),
    Case("unix-home-after-xdg", {"home/.config/openstack/clouds.yaml": clouds(a=pw(
        region_name="home"))}, env={"XDG_CONFIG_HOME": "{tmp}/xdg"}, cloud="a"),
    Case("snap-real-home", {"snap/.config/openstack/clouds.yaml": clouds(a=pw(
        region_name="snap"))}, env={"SNAP_REAL_HOME": "{tmp}/snap"}, cloud="a"),
    Case("xdg-config-dirs", {"site/openstack/clouds.yaml": clouds(a=pw(region_name="site"))},
         cloud="a"),
    Case("xdg-config-dirs-several", {"home/.config/openstack/clouds.yaml": clouds(a=pw()),
                                     "site/openstack/clouds.yaml": clouds(a=pw(
                                         region_name="not-read"))},
         env={"XDG_CONFIG_DIRS": "{tmp}/site:{tmp}/other", "XDG_CONFIG_HOME": " "},
         cloud="a"),
    Case("yml-suffix", {"cwd/clouds.yml": clouds(a=pw(region_name="yml"))}, cloud="a"),
    Case("json-file", {"home/.config/openstack/clouds.json": clouds(a=pw(
        region_name="json"))}, cloud="a"),
    Case("yaml-beats-json", {"cwd/clouds.yaml": clouds(a=pw(region_name="yaml")),
                             "cwd/clouds.json": clouds(a=pw(region_name="json"))}, cloud="a"),
    Case("client-config-file", {"cwd/clouds.yaml": clouds(a=pw(region_name="cwd")),
                                "elsewhere/mine.yaml": clouds(a=pw(region_name="mine"))},
         env={"OS_CLIENT_CONFIG_FILE": "{tmp}/elsewhere/mine.yaml"}, cloud="a"),
    # -- secure.yaml --------------------------------------------------------------------
    Case("secure-merge", {
        "cwd/clouds.yaml": clouds(a={"auth": {k: v for k, v in PW_AUTH.items()
                                              if k != "password"}}),
        "home/.config/openstack/secure.yaml": clouds(a={"auth": {"password": "s3cret"}})},
        cloud="a"),
    Case("secure-file-var-deep", {
        "cwd/clouds.yaml": clouds(a=pw(region_name="R1", interface="internal")),
        "elsewhere/sec.yaml": clouds(a={"auth": {"password": "other", "project_name": "p2"},
                                        "region_name": "R2"})},
        env={"OS_CLIENT_SECURE_FILE": "{tmp}/elsewhere/sec.yaml"}, cloud="a"),
    # -- profiles -----------------------------------------------------------------------
    Case("profile", {
        "cwd/clouds.yaml": clouds(a={"profile": "acme", "auth": {
            k: v for k, v in PW_AUTH.items() if k != "auth_url"}}),
        "home/.config/openstack/clouds-public.yaml": {"public-clouds": {"acme": {
            "auth": {"auth_url": KS}, "region_name": "acme-1", "identity_api_version": 3,
            "image_api_version": "2", "interface": "internal"}}}}, cloud="a"),
    Case("legacy-cloud-key", {
        "cwd/clouds.yaml": clouds(a={"cloud": "acme", "auth": {
            k: v for k, v in PW_AUTH.items() if k != "auth_url"}}),
        "cwd/clouds-public.yaml": {"public-clouds": {"acme": {"auth": {"auth_url": KS}}}}},
        cloud="a"),
    Case("profile-regions", {
        "cwd/clouds.yaml": clouds(a={"profile": "acme", "auth": dict(PW_AUTH)}),
        "cwd/clouds-public.yaml": {"public-clouds": {"acme": {
            "regions": ["north", "south"], "image_endpoint_override":
                "https://glance.acme.example:9292"}}}},
        cloud="a", options={"region_name": "south"}),
    Case("cloud-beats-profile", {
        "cwd/clouds.yaml": clouds(a={"profile": "acme", "auth": dict(PW_AUTH),
                                     "region_name": "mine", "interface": "admin"}),
        "cwd/clouds-public.yaml": {"public-clouds": {"acme": {
            "auth": {"auth_url": "https://other.example/v3"}, "region_name": "theirs",
            "interface": "internal"}}}}, cloud="a"),
    # -- environment --------------------------------------------------------------------
    Case("env-only", {}, env={"OS_AUTH_URL": KS, "OS_USERNAME": "alice",
                              "OS_PASSWORD": "s3cret", "OS_PROJECT_NAME": "demo",
                              "OS_USER_DOMAIN_NAME": "Default",
                              "OS_PROJECT_DOMAIN_NAME": "Default",
                              "OS_REGION_NAME": "RegionOne", "OS_INTERFACE": "internal",
                              "OS_IDENTITY_API_VERSION": "3"}),
    Case("os-cloud-beats-env", {"cwd/clouds.yaml": clouds(a=pw(region_name="file"))},
         env={"OS_CLOUD": "a", "OS_AUTH_URL": "https://env.example/v3",
              "OS_USERNAME": "bob", "OS_REGION_NAME": "env"},
         ignored=("OS_AUTH_URL", "OS_REGION_NAME", "OS_USERNAME")),
    Case("env-beside-file", {"cwd/clouds.yaml": clouds(a=pw(region_name="file"))},
         env={"OS_AUTH_URL": "https://env.example/v3", "OS_USERNAME": "bob",
              "OS_PASSWORD": "x", "OS_PROJECT_ID": "p1"}),
    Case("os-cloud-name", {}, env={"OS_CLOUD_NAME": "fromenv", "OS_CLOUD": "fromenv",
                                   "OS_AUTH_URL": KS, "OS_TOKEN": "tok",
                                   "OS_AUTH_TYPE": "v3token", "OS_PROJECT_ID": "p1"}),
    Case("single-cloud-default", {"cwd/clouds.yaml": clouds(only=pw(region_name="R"))}),
    Case("env-insecure-cacert", {}, env={
        "OS_AUTH_URL": KS, "OS_USERNAME": "u", "OS_PASSWORD": "p", "OS_PROJECT_NAME": "d",
        "OS_INSECURE": "true", "OS_CACERT": "~/ca.pem"}),
    Case("env-image-endpoint", {}, env={
        "OS_AUTH_URL": KS, "OS_USERNAME": "u", "OS_PASSWORD": "p", "OS_PROJECT_NAME": "d",
        "OS_IMAGE_ENDPOINT_OVERRIDE": "https://glance.example:9292",
        "OS_IMAGE_API_VERSION": "2"}),
    # -- regions ------------------------------------------------------------------------
    Case("regions-first", {"cwd/clouds.yaml": clouds(a=pw(regions=["r1", "r2"]))},
         cloud="a"),
    Case("regions-values", {"cwd/clouds.yaml": clouds(a=pw(regions=[
        "r1", {"name": "r2", "values": {"interface": "internal",
                                        "image_endpoint_override": "https://r2.example"}}]))},
         cloud="a", options={"region_name": "r2"}),
    Case("region-name-list", {"cwd/clouds.yaml": clouds(a=pw(region_name="r1,r2"))},
         cloud="a", options={"region_name": "r2"}),
    Case("region-unknown", {"cwd/clouds.yaml": clouds(a=pw(regions=["r1"]))},
         cloud="a", options={"region_name": "nope"}, refused="region_name", sdk="fails"),
    # -- auth types ---------------------------------------------------------------------
    Case("v3token", {"cwd/clouds.yaml": clouds(a={"auth_type": "v3token", "auth": {
        "auth_url": KS, "token": "tok", "project_id": "p1"}})}, cloud="a"),
    Case("infer-token", {"cwd/clouds.yaml": clouds(a={"auth": {
        "auth_url": KS, "token": "tok", "project_name": "demo",
        "project_domain_name": "Default"}})}, cloud="a", infer="token"),
    Case("infer-token-env", {}, env={"OS_AUTH_URL": KS, "OS_TOKEN": "tok",
                                     "OS_PROJECT_ID": "p1"}, infer="token"),
    Case("v3applicationcredential", {"cwd/clouds.yaml": clouds(a={
        "auth_type": "v3applicationcredential", "auth": {
            "auth_url": KS, "application_credential_id": "ac1",
            "application_credential_secret": "sec"}})}, cloud="a"),
    Case("infer-appcred", {"cwd/clouds.yaml": clouds(a={"auth": {
        "auth_url": KS, "application_credential_id": "ac1",
        "application_credential_secret": "sec"}})}, cloud="a",
        infer="v3applicationcredential"),
    Case("none-endpoint", {"cwd/clouds.yaml": clouds(a={
        "auth_type": "none", "image_endpoint_override": "http://127.0.0.1:9292"})},
        cloud="a"),
    Case("none-auth-endpoint", {"cwd/clouds.yaml": clouds(a={
        "auth_type": None, "auth": {"endpoint": "http://127.0.0.1:9292"}})}, cloud="a"),
    Case("infer-none", {"cwd/clouds.yaml": clouds(a={
        "image_endpoint_override": "http://127.0.0.1:9292"})}, cloud="a", infer="none"),
    Case("token-endpoint", {"cwd/clouds.yaml": clouds(a={
        "auth_type": "token_endpoint", "auth": {"endpoint": "http://127.0.0.1:9292",
                                                "token": "tok"}})}, cloud="a"),
    Case("legacy-spellings", {"cwd/clouds.yaml": clouds(a={
        "auth_plugin": "password", "endpoint_type": "internal", "tenant_name": "demo",
        "user_domain_name": "Default", "auth": {"auth-url": KS, "username": "alice",
                                                "password": "s3cret",
                                                "domain_name": "Default"}})}, cloud="a"),
    Case("domain-shortcut-unscoped", {"cwd/clouds.yaml": clouds(a={
        "domain_name": "Default", "auth": {"auth_url": KS, "username": "alice",
                                           "password": "s3cret"}})}, cloud="a"),
    # -- TLS, versions, endpoints, timeouts ----------------------------------------------
    Case("verify-false-beats-cacert", {"cwd/clouds.yaml": clouds(a=pw(
        verify=False, cacert="/tmp/ca.pem"))}, cloud="a"),
    Case("cacert-cert-key", {"cwd/clouds.yaml": clouds(a=pw(
        cacert="~/ca.pem", cert="~/client.crt", key="~/client.key"))}, cloud="a"),
    Case("cert-without-key", {"cwd/clouds.yaml": clouds(a=pw(cert="/c/client.pem"))},
         cloud="a"),
    Case("image-endpoint-version", {"cwd/clouds.yaml": clouds(a=pw(
        image_endpoint_override="https://glance.example:9292/v2", image_api_version=2,
        identity_api_version=3, api_timeout=30, image_interface="admin"))}, cloud="a"),
    Case("service-timeout", {"cwd/clouds.yaml": clouds(a=pw(compute_timeout=9))},
         cloud="a"),
    Case("auth-url-template", {"cwd/clouds.yaml": clouds(a={
        "region_name": "eu1", "auth": {**PW_AUTH,
                                       "auth_url": "https://{region_name}.example/v3"}})},
        cloud="a"),
    Case("verify-as-ca-path", {"cwd/clouds.yaml": clouds(a=pw(verify="/etc/ssl/ca.pem"))},
         cloud="a"),
    Case("imagehub-options-win", {"cwd/clouds.yaml": clouds(a=pw(
        regions=["r1", "r2"], interface="internal", verify=True))}, cloud="a",
        options={"region_name": "r2", "interface": "admin", "verify": False,
                 "endpoint_override": "https://mine.example:9292", "timeout": 12.5}),
    Case("other-services-ignored", {"cwd/clouds.yaml": clouds(a=pw(
        compute_api_version="2.1", volume_api_version=3, networks=[{"name": "n"}]))},
        cloud="a", ignored=("compute_api_version", "networks", "volume_api_version")),
    Case("empty-clouds-file", {"cwd/clouds.yaml": None}, env={
        "OS_AUTH_URL": KS, "OS_USERNAME": "u", "OS_PASSWORD": "p", "OS_PROJECT_ID": "d"}),
    Case("secure-only", {"cwd/secure.yaml": clouds(a=pw())}, cloud="a"),
    Case("dashed-and-numbers", {"cwd/clouds.yaml": clouds(a={
        "region-name": 7, "identity-api-version": 3, "image-api-version": 2.0,
        "auth": {"auth-url": KS, "user-id": 42, "password": "s3cret", "project-id": 99}})},
        cloud="a"),
    Case("region-values-auth", {"cwd/clouds.yaml": clouds(a=pw(regions=[
        {"name": "r1", "values": {"auth": {"project_name": "p-r1"}, "verify": False}}]))},
        cloud="a"),
    Case("env-appcred", {}, env={
        "OS_AUTH_TYPE": "v3applicationcredential", "OS_AUTH_URL": KS,
        "OS_APPLICATION_CREDENTIAL_NAME": "n", "OS_USERNAME": "alice",
        "OS_USER_DOMAIN_NAME": "Default", "OS_APPLICATION_CREDENTIAL_SECRET": "sec",
        "OS_VOLUME_API_VERSION": "3"}, ignored=("volume_api_version",)),
    # -- refused ------------------------------------------------------------------------
    Case("unknown-key", {"cwd/clouds.yaml": clouds(a=pw(flavour="large"))}, cloud="a",
         refused="flavour", sdk="resolves"),
    Case("unprefixed-endpoint-override", {"cwd/clouds.yaml": clouds(a=pw(
        endpoint_override="https://glance.example"))}, cloud="a",
        refused="endpoint_override", sdk="resolves"),
    Case("auth-methods", {"cwd/clouds.yaml": clouds(a={
        "auth_type": "v3multifactor", "auth_methods": ["v3password", "v3totp"],
        "auth": dict(PW_AUTH, passcode="123456")})}, cloud="a", refused="auth_methods",
        sdk="resolves"),
    Case("unsupported-plugin", {"cwd/clouds.yaml": clouds(a={
        "auth_type": "v3oidcpassword", "auth": {"auth_url": KS}})}, cloud="a",
        refused="auth_type", sdk="any"),
    Case("vendor-only-plugin", {"cwd/clouds.yaml": clouds(a={
        "auth_type": "rackspace_apikey", "auth": {"auth_url": KS}})}, cloud="a",
        refused="auth_type", sdk="fails"),
    Case("builtin-vendor-profile", {"cwd/clouds.yaml": clouds(a={
        "profile": "otc", "auth": {k: v for k, v in PW_AUTH.items() if k != "auth_url"}})},
        cloud="a", refused="profile", sdk="resolves"),
    Case("auth-key-typo", {"cwd/clouds.yaml": clouds(a={"auth": {
        **PW_AUTH, "pasword": "typo"}})}, cloud="a", refused="auth.pasword", sdk="fails"),
    Case("image-api-v1", {"cwd/clouds.yaml": clouds(a=pw(image_api_version="1"))},
         cloud="a", refused="image_api_version", sdk="resolves"),
    Case("env-image-url", {}, env={"OS_AUTH_URL": KS, "OS_USERNAME": "u",
                                   "OS_PASSWORD": "p", "OS_PROJECT_NAME": "d",
                                   "OS_IMAGE_URL": "https://glance.example"},
         refused="image_url", sdk="resolves"),
    Case("cloud-not-found", {"cwd/clouds.yaml": clouds(a=pw())}, cloud="b",
         refused="cloud", sdk="fails"),
    Case("timeout-not-api-timeout", {"cwd/clouds.yaml": clouds(a=pw(timeout=5))},
         cloud="a", refused="timeout", sdk="resolves"),
    Case("client-config-file-missing", {"cwd/clouds.yaml": clouds(a=pw())},
         env={"OS_CLIENT_CONFIG_FILE": "{tmp}/typo.yaml"}, cloud="a",
         refused="OS_CLIENT_CONFIG_FILE", sdk="resolves"),
    Case("several-clouds-none-chosen", {"cwd/clouds.yaml": clouds(a=pw(), b=pw())},
         refused="cloud", sdk="fails"),
    Case("interface-list", {"cwd/clouds.yaml": clouds(a=pw(interface=["internal",
                                                                      "public"]))},
         cloud="a", refused="interface", sdk="resolves"),
    Case("token-with-password-plugin", {"cwd/clouds.yaml": clouds(a={
        "auth_type": "password", "auth": {"auth_url": KS, "token": "tok"}})}, cloud="a",
        refused="auth.token", sdk="fails"),
    Case("missing-profile", {"cwd/clouds.yaml": clouds(a={"profile": "nowhere",
                                                          "auth": dict(PW_AUTH)})},
         cloud="a", refused="profile", sdk="resolves"),
    # -- more variants: file order, secure/profile merges, TLS, legacy and env spellings --
    Case("cwd-json-beats-home-yaml", {"cwd/clouds.json": clouds(a=pw(region_name="cwd")),
                                          "home/.config/openstack/clouds.yaml": clouds(a=pw(
                                              region_name="home"))}, cloud="a"),
    Case("secure-elsewhere", {"home/.config/openstack/clouds.yaml": clouds(a={"auth": {
        k: v for k, v in PW_AUTH.items() if k != "password"}}),
        "cwd/secure.yaml": clouds(a={"auth": {"password": "s3cret"}})}, cloud="a"),
    Case("insecure-key", {"cwd/clouds.yaml": clouds(a=pw(insecure=True))}, cloud="a"),
    Case("insecure-false-cacert", {"cwd/clouds.yaml": clouds(a=pw(
        insecure=False, cacert="/ca.pem"))}, cloud="a"),
    Case("verify-string-false", {"cwd/clouds.yaml": clouds(a=pw(verify="false"))},
         cloud="a"),
    Case("profile-auth-deep", {
        "cwd/clouds.yaml": clouds(a={"profile": "acme", "auth": {"username": "alice",
                                                                  "password": "s3cret"}}),
        "cwd/clouds-public.yaml": {"public-clouds": {"acme": {"auth": {
            "auth_url": KS, "project_name": "pub", "user_domain_name": "Default",
            "project_domain_name": "Default"}}}}}, cloud="a"),
    Case("profile-region-values", {
        "cwd/clouds.yaml": clouds(a={"profile": "acme", "auth": dict(PW_AUTH)}),
        "cwd/clouds-public.yaml": {"public-clouds": {"acme": {"regions": [
            {"name": "r1", "values": {"interface": "internal"}}, "r2"]}}}},
        cloud="a", options={"region_name": "r1"}),
    Case("profile-in-secure", {
        "cwd/clouds.yaml": clouds(a={"auth": {k: v for k, v in PW_AUTH.items()
                                              if k != "auth_url"}}),
        "cwd/secure.yaml": clouds(a={"profile": "acme"}),
        "cwd/clouds-public.yaml": {"public-clouds": {"acme": {"auth": {"auth_url": KS},
                                                               "region_name": "p1"}}}},
        cloud="a"),
    Case("profile-yml-in-site", {
        "cwd/clouds.yaml": clouds(a={"profile": "acme", "auth": {
            k: v for k, v in PW_AUTH.items() if k != "auth_url"}}),
        "site/openstack/clouds-public.yml": {"public-clouds": {"acme": {
            "auth": {"auth_url": KS}, "region_name": "site"}}}}, cloud="a"),
    Case("empty-env-values", {"cwd/clouds.yaml": clouds(a=pw(region_name="file"))},
         env={"OS_CLOUD": "a", "OS_REGION_NAME": "", "OS_PASSWORD": ""},
         ignored=("OS_PASSWORD", "OS_REGION_NAME")),
    Case("env-empty-password", {}, env={"OS_AUTH_URL": KS, "OS_USERNAME": "u",
                                            "OS_PASSWORD": "", "OS_PROJECT_NAME": "d"}),
    Case("os-cloud-empty", {"cwd/clouds.yaml": clouds(only=pw(region_name="R"))},
         env={"OS_CLOUD": ""}),
    Case("tenant-legacy-env", {}, env={"OS_AUTH_URL": KS, "OS_USERNAME": "u",
                                           "OS_PASSWORD": "p", "OS_TENANT_NAME": "t",
                                           "OS_TENANT_ID": "tid"}),
    Case("tenant-in-auth", {"cwd/clouds.yaml": clouds(a={"auth": {
        "auth_url": KS, "username": "u", "password": "p", "tenant_id": "t1",
        "domain_id": "d1"}})}, cloud="a"),
    Case("identity-version-float", {"cwd/clouds.yaml": clouds(a=pw(
        identity_api_version=3.0, image_api_version=2))}, cloud="a"),
    Case("endpoint-type-env", {}, env={"OS_AUTH_URL": KS, "OS_USERNAME": "u",
                                           "OS_PASSWORD": "p", "OS_PROJECT_NAME": "d",
                                           "OS_ENDPOINT_TYPE": "internalURL"}),
    Case("interface-url-suffix", {"cwd/clouds.yaml": clouds(a=pw(
        interface="internalURL"))}, cloud="a"),
    Case("regions-env-region", {"cwd/clouds.yaml": clouds(a=pw(regions=["r1", "r2"]))},
         env={"OS_CLOUD": "a", "OS_REGION_NAME": "r2"}, ignored=("OS_REGION_NAME",)),
    Case("envvars-cloud-named", {}, env={"OS_CLOUD": "envvars", "OS_AUTH_URL": KS,
                                             "OS_USERNAME": "u", "OS_PASSWORD": "p",
                                             "OS_PROJECT_NAME": "d"}),
    Case("key-without-cert", {"cwd/clouds.yaml": clouds(a=pw(key="/k.pem"))},
         cloud="a"),
    Case("v3password", {"cwd/clouds.yaml": clouds(a={"auth_type": "v3password",
                                                          "auth": dict(PW_AUTH)})}, cloud="a"),
    Case("region-name-empty", {"cwd/clouds.yaml": clouds(a=pw(region_name=""))},
         cloud="a"),
    Case("image-endpoint-env-with-cloud", {"cwd/clouds.yaml": clouds(a=pw())},
         env={"OS_CLOUD": "a", "OS_IMAGE_ENDPOINT_OVERRIDE": "https://g.example"},
         ignored=("OS_IMAGE_ENDPOINT_OVERRIDE",)),
    Case("auth-url-env-only-token", {}, env={"OS_AUTH_URL": KS, "OS_TOKEN": "tok",
                                                 "OS_AUTH_TYPE": "token",
                                                 "OS_PROJECT_ID": "p1"}),
    Case("cacert-env-with-cloud", {"cwd/clouds.yaml": clouds(a=pw())},
         env={"OS_CLOUD": "a", "OS_CACERT": "/env-ca.pem"}, ignored=("OS_CACERT",)),
    Case("auth-type-dash", {"cwd/clouds.yaml": clouds(a={
        "auth-type": "v3applicationcredential", "auth": {
            "auth-url": KS, "application-credential-id": "ac1",
            "application-credential-secret": "sec"}})}, cloud="a", refused="auth-type",
        sdk="fails"),
    Case("secure-regions-override", {
        "cwd/clouds.yaml": clouds(a=pw(regions=["r1", "r2"])),
        "cwd/secure.yaml": clouds(a={"regions": ["s1"]})}, cloud="a"),
    Case("region-values-endpoint-over-cloud", {"cwd/clouds.yaml": clouds(a=pw(
        image_endpoint_override="https://cloud.example", regions=[{"name": "r1", "values": {
            "image_endpoint_override": "https://r1.example"}}]))}, cloud="a"),
    Case("dashed-auth-type-token", {"cwd/clouds.yaml": clouds(a={"auth-type": "v3token",
        "auth": {"auth_url": KS, "token": "tok", "project_id": "p1"}})}, cloud="a",
        refused="auth-type", sdk="fails"),
    Case("dashed-endpoint-type", {"cwd/clouds.yaml": clouds(a=pw(**{"endpoint-type": "internal"}))},
         cloud="a", refused="endpoint-type", sdk="resolves"),
    Case("dashed-tenant-name-top", {"cwd/clouds.yaml": clouds(a={"tenant-name": "demo",
        "auth": {"auth_url": KS, "username": "u", "password": "p"}})}, cloud="a"),
    Case("dashed-tenant-name-auth", {"cwd/clouds.yaml": clouds(a={
        "auth": {"auth_url": KS, "username": "u", "password": "p", "tenant-name": "demo"}})},
        cloud="a"),
    Case("dashed-user-domain-top", {"cwd/clouds.yaml": clouds(a={"user-domain-name": "D",
        "project-domain-name": "P", "auth": {"auth_url": KS, "username": "u", "password": "p",
                                             "project_name": "x"}})}, cloud="a"),
    Case("dashed-auth-token", {"cwd/clouds.yaml": clouds(a={"auth_type": "v3token",
        "auth": {"auth_url": KS, "auth-token": "tok", "project_id": "p1"}})}, cloud="a"),
    Case("dashed-api-timeout", {"cwd/clouds.yaml": clouds(a=pw(**{"api-timeout": 30}))},
         cloud="a"),
    Case("dashed-image-timeout", {"cwd/clouds.yaml": clouds(a=pw(**{"image-timeout": 7}))},
         cloud="a"),
    Case("dashed-image-endpoint", {"cwd/clouds.yaml": clouds(a=pw(**{
        "image-endpoint-override": "https://g.example", "image-api-version": "2",
        "image-interface": "internal"}))}, cloud="a"),
    Case("dashed-domain-name-top", {"cwd/clouds.yaml": clouds(a={"domain-name": "D",
        "auth": {"auth_url": KS, "username": "u", "password": "p"}})}, cloud="a"),
    Case("dashed-os-prefixed-key", {"cwd/clouds.yaml": clouds(a=pw(os_region_name="x"))},
         cloud="a", refused="os_region_name", sdk="resolves"),
    Case("dashed-region-values-endpoint-type", {"cwd/clouds.yaml": clouds(a=pw(regions=[
        {"name": "r1", "values": {"endpoint-type": "internal"}}]))}, cloud="a",
        refused="endpoint-type", sdk="resolves"),
    Case("dashed-profile-auth-type", {
        "cwd/clouds.yaml": clouds(a={"profile": "acme", "auth": {
            "auth_url": KS, "application_credential_id": "ac1",
            "application_credential_secret": "sec"}}),
        "cwd/clouds-public.yaml": {"public-clouds": {"acme": {
            "auth-type": "v3applicationcredential"}}}}, cloud="a", refused="auth-type",
        sdk="fails"),
    Case("dashed-image-endpoint-type", {"cwd/clouds.yaml": clouds(a=pw(**{
        "image-endpoint-type": "internal"}))}, cloud="a", refused="image-endpoint-type",
        sdk="resolves"),
    Case("os-cloud-missing-env-set", {"cwd/clouds.yaml": clouds(a=pw())},
         env={"OS_CLOUD": "b", "OS_AUTH_URL": KS, "OS_USERNAME": "u", "OS_PASSWORD": "p"},
         refused="cloud", sdk="fails"),
    Case("insecure-false-env-cacert", {}, env={
        "OS_AUTH_URL": KS, "OS_USERNAME": "u", "OS_PASSWORD": "p", "OS_PROJECT_NAME": "d",
        "OS_INSECURE": "false", "OS_CACERT": "/ca.pem"}),
    Case("identity-v2-env", {}, env={"OS_AUTH_URL": KS, "OS_USERNAME": "u",
                                        "OS_PASSWORD": "p", "OS_PROJECT_NAME": "d",
                                        "OS_IDENTITY_API_VERSION": "2"}),
    Case("regions-int-names", {"cwd/clouds.yaml": clouds(a=pw(regions=[7, "r2"]))},
         cloud="a"),
    Case("regions-dict-no-values", {"cwd/clouds.yaml": clouds(a=pw(regions=[
        {"name": "r1"}, {"name": "r2"}]))}, cloud="a", options={"region_name": "r2"}),
    Case("region-name-and-regions", {"cwd/clouds.yaml": clouds(a=pw(
        region_name="r9", regions=["r1", "r2"]))}, cloud="a"),
    Case("profile-region-vs-cloud-region", {
        "cwd/clouds.yaml": clouds(a={"profile": "acme", "auth": dict(PW_AUTH),
                                     "region_name": "mine"}),
        "cwd/clouds-public.yaml": {"public-clouds": {"acme": {"regions": ["r1", "r2"]}}}},
        cloud="a"),
    Case("env-region-list", {}, env={"OS_AUTH_URL": KS, "OS_USERNAME": "u",
                                        "OS_PASSWORD": "p", "OS_PROJECT_NAME": "d",
                                        "OS_REGION_NAME": "r1,r2"}),
    Case("verify-true-cacert", {"cwd/clouds.yaml": clouds(a=pw(verify=True,
                                                                   cacert="/ca.pem"))},
         cloud="a"),
    Case("cert-key-env", {}, env={"OS_AUTH_URL": KS, "OS_USERNAME": "u",
                                     "OS_PASSWORD": "p", "OS_PROJECT_NAME": "d",
                                     "OS_CERT": "/c.pem", "OS_KEY": "/k.pem"}),
    Case("user-id-only", {"cwd/clouds.yaml": clouds(a={"auth": {
        "auth_url": KS, "user_id": "uid", "password": "p", "project_id": "pid"}})},
        cloud="a"),
    Case("system-scope", {"cwd/clouds.yaml": clouds(a={"auth": {
        "auth_url": KS, "username": "u", "password": "p", "user_domain_name": "Default",
        "system_scope": "all"}})}, cloud="a"),
    Case("interface-env-with-file-no-cloud", {"cwd/clouds.yaml": clouds(a=pw())},
         env={"OS_INTERFACE": "admin"}, cloud="a", ignored=("OS_INTERFACE",)),
    Case("secure-profile-merge", {
        "cwd/clouds.yaml": clouds(a={"profile": "acme", "auth": {"username": "u"}}),
        "cwd/secure.yaml": clouds(a={"auth": {"password": "p"}}),
        "cwd/clouds-public.yaml": {"public-clouds": {"acme": {
            "auth": {"auth_url": KS, "project_name": "x"}, "region_name": "p1"}}}},
        cloud="a"),
    Case("yml-secure", {"cwd/clouds.yaml": clouds(a={"auth": {"auth_url": KS,
                                                                  "username": "u"}}),
                           "home/.config/openstack/secure.yml": clouds(a={"auth": {
                               "password": "p", "project_name": "d"}})}, cloud="a"),
    Case("api-timeout-string", {"cwd/clouds.yaml": clouds(a=pw(api_timeout="15"))},
         cloud="a"),
    Case("image-api-version-float", {"cwd/clouds.yaml": clouds(a=pw(
        image_api_version=2.0))}, cloud="a"),
    Case("identity-endpoint-override", {"cwd/clouds.yaml": clouds(a=pw(
        identity_endpoint_override="https://ks.example"))}, cloud="a",
        ignored=("identity_endpoint_override",)),
    Case("env-default-domain", {}, env={"OS_AUTH_URL": KS, "OS_USERNAME": "u",
                                           "OS_PASSWORD": "p", "OS_PROJECT_NAME": "d",
                                           "OS_DEFAULT_DOMAIN": "dom1"},
         refused="default_domain", sdk="any"),
    Case("env-ids", {}, env={"OS_AUTH_URL": KS, "OS_USER_ID": "uid", "OS_PASSWORD": "p",
                                "OS_PROJECT_ID": "pid", "OS_PROJECT_DOMAIN_ID": "pd",
                                "OS_USER_DOMAIN_ID": "ud"}),
    Case("env-system-scope", {}, env={"OS_AUTH_URL": KS, "OS_USERNAME": "u",
                                         "OS_PASSWORD": "p", "OS_USER_DOMAIN_NAME": "D",
                                         "OS_SYSTEM_SCOPE": "all"}),
    Case("env-endpoint-type", {}, env={"OS_AUTH_URL": KS, "OS_USERNAME": "u",
                                          "OS_PASSWORD": "p", "OS_PROJECT_NAME": "d",
                                          "OS_ENDPOINT_TYPE": "internal"}),
    Case("env-trust", {}, env={"OS_AUTH_URL": KS, "OS_USERNAME": "u", "OS_PASSWORD": "p",
                                  "OS_TRUST_ID": "t1"}),
    Case("env-api-timeout", {}, env={"OS_AUTH_URL": KS, "OS_USERNAME": "u",
                                        "OS_PASSWORD": "p", "OS_PROJECT_NAME": "d",
                                        "OS_API_TIMEOUT": "20"}),
    Case("env-verify-false-str", {}, env={"OS_AUTH_URL": KS, "OS_USERNAME": "u",
                                             "OS_PASSWORD": "p", "OS_PROJECT_NAME": "d",
                                             "OS_VERIFY": "False"}),
    Case("env-image-interface", {}, env={"OS_AUTH_URL": KS, "OS_USERNAME": "u",
                                            "OS_PASSWORD": "p", "OS_PROJECT_NAME": "d",
                                            "OS_INTERFACE": "public",
                                            "OS_IMAGE_INTERFACE": "internal"}),
    Case("env-token-and-password", {}, env={"OS_AUTH_URL": KS, "OS_USERNAME": "u",
                                               "OS_PASSWORD": "p", "OS_TOKEN": "tok",
                                               "OS_PROJECT_NAME": "d"},
         refused="auth.token", sdk="fails"),
    Case("env-lowercase-ignored", {"cwd/clouds.yaml": clouds(a=pw())},
         env={"os_cloud": "a", "OS_CLOUD": "a"}),
    Case("xdg-relative", {"cwd/rel/openstack/clouds.yaml": clouds(a=pw(region_name="rel")),
                              "home/.config/openstack/clouds.yaml": clouds(a=pw(
                                  region_name="home"))},
         env={"XDG_CONFIG_HOME": "rel"}, cloud="a"),
    Case("xdg-dirs-empty-parts", {"site/openstack/clouds.yaml": clouds(a=pw(
        region_name="site"))}, env={"XDG_CONFIG_DIRS": ":{tmp}/site::"}, cloud="a"),
    Case("xdg-dirs-trailing-slash", {"site/openstack/clouds.yaml": clouds(a=pw(
        region_name="site"))}, env={"XDG_CONFIG_DIRS": "{tmp}/site/"}, cloud="a"),
    Case("xdg-home-tilde", {"home/x/openstack/clouds.yaml": clouds(a=pw(region_name="t"))},
         env={"XDG_CONFIG_HOME": "~/x"}, cloud="a", refused="cloud", sdk="fails"),
    Case("client-config-file-relative", {"cwd/sub/mine.yaml": clouds(a=pw(region_name="m"))},
         env={"OS_CLIENT_CONFIG_FILE": "sub/mine.yaml"}, cloud="a"),
    Case("client-config-file-tilde", {"home/mine.yaml": clouds(a=pw(region_name="m"))},
         env={"OS_CLIENT_CONFIG_FILE": "~/mine.yaml"}, cloud="a",
         refused="OS_CLIENT_CONFIG_FILE", sdk="fails"),  # neither expands '~' there
    Case("secure-file-missing", {"cwd/clouds.yaml": clouds(a=pw())},
         env={"OS_CLIENT_SECURE_FILE": "{tmp}/nope.yaml"}, cloud="a",
         refused="OS_CLIENT_SECURE_FILE", sdk="resolves"),
    # -- these also log in to the real Keystone ------------------------------------------
    Case("login-secure", {
        "cwd/clouds.yaml": clouds(a={"auth": {k: v for k, v in REAL_AUTH.items()
                                              if k != "password"}, "region_name": "{region}"}),
        "home/.config/openstack/secure.yaml": clouds(a={"auth": {"password": "{password}"}})},
        env={"OS_CLOUD": "a"}, login=True),
    Case("login-profile", {
        "cwd/clouds.yaml": clouds(a={"profile": "lab", "auth": {
            k: v for k, v in REAL_AUTH.items() if k != "auth_url"}}),
        "home/.config/openstack/clouds-public.yaml": {"public-clouds": {"lab": {
            "auth": {"auth_url": "{auth_url}"}, "regions": ["{region}"],
            "identity_api_version": 3}}}}, cloud="a", login=True),
    Case("login-env", {}, env={"OS_AUTH_URL": "{auth_url}", "OS_USERNAME": "{username}",
                               "OS_PASSWORD": "{password}", "OS_PROJECT_NAME": "{project}",
                               "OS_USER_DOMAIN_NAME": "Default",
                               "OS_PROJECT_DOMAIN_NAME": "Default",
                               "OS_REGION_NAME": "{region}"}, login=True),
    Case("login-infer-appcred", {"cwd/clouds.yaml": clouds(a={"auth": {
        "auth_url": "{auth_url}", "application_credential_id": "{appcred_id}",
        "application_credential_secret": "{appcred_secret}"}, "region_name": "{region}"})},
        cloud="a", infer="v3applicationcredential", login=True),
    Case("login-infer-token", {}, env={
        "OS_AUTH_URL": "{auth_url}", "OS_TOKEN": "{token}", "OS_PROJECT_NAME": "{project}",
        "OS_PROJECT_DOMAIN_NAME": "Default", "OS_REGION_NAME": "{region}"},
        infer="token", login=True),
    Case("login-endpoint-override", {"cwd/clouds.yaml": clouds(a={
        "auth": dict(REAL_AUTH), "regions": [{"name": "{region}", "values": {
            "image_endpoint_override": "{glance}"}}]})}, cloud="a", login=True),
]
