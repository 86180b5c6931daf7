"""Real Keystone + Glance for the test suite.

``provision()`` builds (once, cached) everything the servers need;
``start_openstack(run_dir)`` starts both on free loopback ports, creates an
admin, three member projects with users, and the ``image`` catalog entry, and
returns an :class:`OpenStackCloud` describing them. Nothing here is mocked.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import glance, keystone
from .openstack_procs import ServerError, free_port
from .openstack_venvs import build_all, glance_venv, keystone_venv

__all__ = [
    "OpenStackCloud",
    "ProjectUser",
    "ServerError",
    "password_session",
    "provision",
    "start_openstack",
]

MEMBER_PROJECTS = ("alpha", "beta", "gamma")


def provision() -> None:
    """Build the server venvs and state templates once; a cached re-run takes milliseconds."""
    glance_env, keystone_env = build_all()
    # Both templates cost CPU for a few seconds; two cores, two jobs.
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [
            pool.submit(keystone.build_template, keystone_env),
            pool.submit(glance.build_template, glance_env),
        ]
        for job in jobs:
            job.result()


@dataclass(frozen=True)
class ProjectUser:
    """A user with a role on one project, all in the Default domain."""

    project_name: str
    project_id: str
    username: str
    user_id: str
    password: str
    roles: tuple[str, ...] = ("member",)

    def auth(self, auth_url: str) -> dict[str, str]:
        """The ``auth`` mapping clouds.yaml uses for password login."""
        return {
            "auth_url": auth_url,
            "username": self.username,
            "password": self.password,
            "project_name": self.project_name,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        }


@dataclass
class OpenStackCloud:
    """Everything a test needs to reach the running Keystone and Glance."""

    auth_url: str
    region_name: str
    glance_url: str
    admin: ProjectUser
    projects: dict[str, ProjectUser]
    data_dir: Path
    keystone_server: keystone.KeystoneServer
    glance_server: glance.GlanceServer
    startup_seconds: float = 0.0
    _stopped: bool = field(default=False, repr=False)

    @property
    def glance_log(self) -> Path:
        return self.glance_server.daemon.log

    @property
    def keystone_log(self) -> Path:
        return self.keystone_server.daemon.log

    @property
    def pids(self) -> dict[str, int | None]:
        return {
            "keystone": self.keystone_server.daemon.pid,
            "glance": self.glance_server.daemon.pid,
        }

    def project(self, name: str) -> ProjectUser:
        return self.projects[name]

    def clouds_yaml(self) -> dict[str, Any]:
        """A clouds.yaml document with one cloud per user (``admin``, ``alpha`` ...)."""
        clouds: dict[str, Any] = {}
        for name, user in {"admin": self.admin, **self.projects}.items():
            clouds[name] = {
                "auth_type": "password",
                "auth": user.auth(self.auth_url),
                "region_name": self.region_name,
                "interface": "public",
            }
        return {"clouds": clouds}

    def kill_glance(self) -> None:
        self.glance_server.kill()

    def restart_glance(self, timeout: float = 60) -> None:
        self.glance_server.restart(timeout)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.glance_server.stop()
        self.keystone_server.stop()


def _keystone_admin(auth_url: str) -> Any:
    # keystoneauth1 lives in the test venv (imagehub's ``openstack`` extra).
    from keystoneauth1 import adapter, session
    from keystoneauth1.identity import v3

    auth = v3.Password(
        auth_url=auth_url,
        username="admin",
        password=keystone.ADMIN_PASSWORD,
        project_name="admin",
        user_domain_id="default",
        project_domain_id="default",
    )
    sess = session.Session(auth=auth)
    return adapter.Adapter(sess, service_type="identity", endpoint_override=auth_url)


def _populate(
    auth_url: str, glance_url: str
) -> tuple[ProjectUser, dict[str, ProjectUser]]:
    """Create projects, users, role grants and the image catalog entry through the API."""
    ks = _keystone_admin(auth_url)

    def post(path: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = ks.post(path, json={key: body}).json()[key]
        return result

    roles = {r["name"]: r["id"] for r in ks.get("/roles").json()["roles"]}
    admin_user = ks.get("/users", params={"name": "admin"}).json()["users"][0]
    admin_project = ks.get("/projects", params={"name": "admin"}).json()["projects"][0]
    admin = ProjectUser(
        project_name="admin",
        project_id=admin_project["id"],
        username="admin",
        user_id=admin_user["id"],
        password=keystone.ADMIN_PASSWORD,
        roles=("admin",),
    )

    def project_user(
        project: str, user: str, password: str, role_names: tuple[str, ...]
    ) -> ProjectUser:
        pid = post("/projects", "project", {"name": project, "domain_id": "default"})[
            "id"
        ]
        uid = post(
            "/users",
            "user",
            {"name": user, "domain_id": "default", "password": password},
        )["id"]
        for role in role_names:
            ks.put(f"/projects/{pid}/users/{uid}/roles/{roles[role]}")
        return ProjectUser(project, pid, user, uid, password, role_names)

    project_user(
        glance.SERVICE_PROJECT,
        glance.SERVICE_USER,
        glance.SERVICE_PASSWORD,
        ("admin", "service"),
    )
    projects = {
        name: project_user(name, f"{name}-user", f"{name}-secret", ("member",))
        for name in MEMBER_PROJECTS
    }
    service = post("/services", "service", {"type": "image", "name": "glance"})
    for interface in ("public", "internal", "admin"):
        post(
            "/endpoints",
            "endpoint",
            {
                "service_id": service["id"],
                "interface": interface,
                "url": glance_url,
                "region_id": keystone.REGION,
            },
        )
    return admin, projects


def password_session(cloud: OpenStackCloud, user: ProjectUser) -> Any:
    """A keystoneauth1 Session logged in as ``user`` (v3 password auth, real Keystone)."""
    from keystoneauth1 import session
    from keystoneauth1.identity import v3

    auth = v3.Password(
        auth_url=cloud.auth_url,
        username=user.username,
        password=user.password,
        project_name=user.project_name,
        user_domain_name="Default",
        project_domain_name="Default",
    )
    return session.Session(auth=auth)


def start_openstack(run_dir: Path, *, timeout: float = 60) -> OpenStackCloud:
    """Start Keystone and Glance under ``run_dir``; ``provision()`` must have run."""
    started = time.monotonic()
    run_dir.mkdir(parents=True, exist_ok=True)
    ks_port, gl_port = free_port(), free_port()
    ks_server = keystone.start_keystone(keystone_venv(), run_dir, ks_port)
    gl_server: glance.GlanceServer | None = None
    try:
        # Glance only calls Keystone when it validates a token, so both boot together.
        gl_server = glance.start_glance(
            glance_venv(),
            run_dir,
            gl_port,
            glance.KeystoneLink(auth_url=ks_server.auth_url),
        )
        ks_server.wait_ready(timeout)
        try:
            admin, projects = _populate(ks_server.auth_url, gl_server.url)
        except Exception as exc:  # any keystoneauth1 or HTTP failure: report it whole
            raise ServerError(
                f"populating keystone failed: {exc!r}; log {ks_server.daemon.log}"
            ) from exc
        gl_server.wait_ready(timeout)
    except BaseException:
        if gl_server is not None:
            gl_server.stop()
        ks_server.stop()
        raise
    return OpenStackCloud(
        auth_url=ks_server.auth_url,
        region_name=keystone.REGION,
        glance_url=gl_server.url,
        admin=admin,
        projects=projects,
        data_dir=run_dir,
        keystone_server=ks_server,
        glance_server=gl_server,
        startup_seconds=time.monotonic() - started,
    )


if __name__ == "__main__":  # pragma: no cover - manual smoke run
    import signal
    import sys
    import tempfile

    # SIGTERM must run the finally below, or the servers outlive this process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    provision()
    with tempfile.TemporaryDirectory(prefix="imagehub-openstack-") as tmp:
        cloud = start_openstack(Path(tmp))
        try:
            print(
                f"ready in {cloud.startup_seconds:.1f}s: {cloud.auth_url} {cloud.glance_url}"
            )
            if "--wait" in sys.argv:
                input("press enter to stop")
        finally:
            cloud.stop()
