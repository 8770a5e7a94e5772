"""``cloister demo up`` / ``down``: the confidential patient service on this machine.

Invariants:
- every process ``up`` starts is recorded (:mod:`._procs`) before the next
  step, so a failing step stops exactly what was started, and ``down``
  stops exactly those processes;
- the fspf key lives only in the CAS (inside the flask session): a later
  ``up`` reads it back from there to reuse the sealed tree, and seals afresh
  when the tree, its tag or the source changed;
- sessions are created on the first ``up`` and updated (with their
  predecessor) only when their text changes, so certificates and data stay.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cloister import errors, fspf
from cloister.attest import measure
from cloister.cas._state import ensure_file_seal
from cloister.demo import _services as svc
from cloister.demo._cas import DemoCAS, ensure_identity
from cloister.demo._layout import STOP_ORDER, DemoOptions, Layout, default_app_dir, source_digest
from cloister.demo._procs import ProcessTable
from cloister.demo._users import ServiceUsers, hand_over, service_users
from cloister.policy import substitute_variables
from cloister.runtime._volumes import unmount

Say = Callable[[str], None]
STEPS = 10
_PREDECESSOR = re.compile(r"\npredecessor: [0-9a-f]+\n\Z")
#: a patient id no one uses: the API answers 404 for it once Redis answers too
_PROBE = "/patient/cloister-demo-readiness-probe"


@dataclass(frozen=True)
class Running:
    """What ``up`` started and where a user finds it."""

    layout: Layout
    flask_session: str
    redis_session: str
    options: DemoOptions


def up(options: DemoOptions, say: Say = print) -> Running:
    """Start everything; on any failure stop what was started and raise one clear error."""
    layout = Layout.of(options.directory)
    table = ProcessTable(layout.root)
    step = _Stepper(say)
    leftovers = table.stop_all(STOP_ORDER)
    if leftovers:
        say(f"stopped processes left from a previous up in {layout.root}: "
            + ", ".join(leftovers))
    try:
        return _up(options, layout, table, step)
    except BaseException:
        stopped = table.stop_all(STOP_ORDER)
        if stopped:
            say("stopped " + ", ".join(stopped))
        shutil.rmtree(layout.redis_tls, ignore_errors=True)  # Redis's key: never left behind
        _close_volume(layout, say)
        raise


def down(directory: Path, say: Say = print) -> list[str]:
    """Stop the processes ``up`` started in ``directory``; remove Redis's in-memory TLS files."""
    layout = Layout.of(directory)
    stopped = ProcessTable(layout.root).stop_all(STOP_ORDER)
    shutil.rmtree(layout.redis_tls, ignore_errors=True)
    _close_volume(layout, say)
    say(f"stopped {', '.join(stopped)}" if stopped else f"nothing running in {layout.root}")
    return stopped


def _close_volume(layout: Layout, say: Say) -> None:
    """Unmount Redis's encrypted data volume (its files stay, encrypted, for the next up)."""
    try:
        unmount(str(layout.redis_data))
    except errors.Error as err:
        say(f"warning: {err.message}")


class _Stepper:
    def __init__(self, say: Say) -> None:
        self.say, self.n = say, 0

    def __call__(self, text: str) -> None:
        self.n += 1
        self.say(f"[{self.n:2d}/{STEPS}] {text}")


def _up(options: DemoOptions, layout: Layout, table: ProcessTable, step: _Stepper) -> Running:
    o = options
    step(f"checking ports (CAS {o.cas_port}, Redis {o.redis_port}, API {o.api_port})")
    anywhere = "0.0.0.0"  # noqa: S104 - Redis and the API listen on every interface
    svc.check_ports({"CAS": ("127.0.0.1", o.cas_port),
                     "Redis": (anywhere, o.redis_port), "API": (anywhere, o.api_port)})
    step("checking redis-server, gocryptfs and FUSE")
    redis_server = svc.check_redis_server()
    svc.check_volume_tools()
    app_dir = o.app_dir or default_app_dir()
    if app_dir is None or not (app_dir / "rest_api.py").is_file():
        raise errors.ConfigError(
            "cannot find the patient service (examples/patients/rest_api.py)",
            details=["run from the cloister checkout, or pass --app DIR"],
        )
    for d in (layout.root, layout.cas, layout.las, layout.logs, layout.redis_data):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        d.chmod(0o700)  # the CAS refuses a state directory others can read

    done = ensure_file_seal(layout.cas, layout.root / "cas-master.key", store_url=o.store)
    where = layout.cas if o.store == "sqlite" else o.store.split("@")[-1].split("?")[0]
    step(f"starting the CAS on https://127.0.0.1:{o.cas_port} (store {where})")
    if done:  # a note of this step: only the first up does it, and the count stays 10
        step.say(f"        {done} the CAS state {layout.cas} (file seal, key "
                 f"{layout.root}/cas-master.key)")
    cas = table.start("cas", svc.cloister_argv(
        "cas", "serve", "--state", str(layout.cas), "--listen", f"127.0.0.1:{o.cas_port}",
        *(("--store", o.store) if o.store != "sqlite" else ())),
        svc.child_env({}), layout.logs / "cas.log")
    identity = ensure_identity(layout.identity)
    client_holder: list[DemoCAS] = []

    def cas_ready() -> bool:
        if not layout.cas_cert.exists():
            return False
        if not client_holder:
            client_holder.append(DemoCAS(o.cas_port, layout.cas_cert, identity))
        return client_holder[0].healthy()

    svc.wait_until(table, cas, "the CAS", cas_ready, o.ready_seconds)
    client = client_holder[0]

    users = _start_las(o, layout, table, step, client)

    flask_name, redis_name = layout.session_names()
    step(f"sealing {app_dir} (encrypted) into {layout.fspf}")
    seal = _seal(app_dir, layout, client, flask_name, step.say)

    step("measuring this Python + cloister runtime, and redis-server")
    variables = {
        "FLASK_SESSION": flask_name, "REDIS_SESSION": redis_name,
        "MRENCLAVE": measure(), "MRENCLAVE_REDIS": measure(redis_server),
        "API_DIR": str(layout.fspf), "API_PORT": str(o.api_port),
        "REDIS_PORT": str(o.redis_port), "REDIS_TLS_DIR": str(layout.redis_tls),
        "REDIS_DATA_DIR": str(layout.redis_data),
        "REDIS_UID": str(users.redis[0]), "REDIS_GID": str(users.redis[1]),
        "API_UID": str(users.api[0]), "API_GID": str(users.api[1]),
        "SCONE_FSPF_PATH": seal[0], "SCONE_FSPF_KEY": seal[1], "SCONE_FSPF_TAG": seal[2],
    }
    step(f"storing sessions {redis_name} and {flask_name} in the CAS")
    for name, template in ((redis_name, "redis.yml"), (flask_name, "flask.yml")):
        text = substitute_variables((app_dir / "policies" / template).read_text(), variables)
        step.say(f"        session {name}: {_store(client, name, text)}")

    base = {"CLOISTER_CAS_ADDR": f"127.0.0.1:{o.cas_port}",
            "CLOISTER_LAS_ADDR": str(layout.las_socket),
            "CLOISTER_CAS_CERT": str(hand_over(layout, users))}
    step(f"starting Redis under cloister run (TLS only, port {o.redis_port})")
    shutil.rmtree(layout.redis_tls, ignore_errors=True)
    redis = table.start("redis", svc.cloister_argv("run", "--", "redis-server"),
                        svc.child_env({**base, "CLOISTER_CONFIG_ID": f"{redis_name}/redis"}),
                        layout.logs / "redis.log", users.redis)
    svc.wait_until(table, redis, "Redis", lambda: svc.tcp_open(o.redis_port), o.ready_seconds)

    step(f"starting the patient API under cloister run (https://api:{o.api_port})")
    api = table.start("api", svc.cloister_argv("run"), svc.child_env({
        **base, "CLOISTER_CONFIG_ID": f"{flask_name}/flask_restapi",
        "CLOISTER_FSPF_PATH": seal[0]}), layout.logs / "api.log", users.api)
    api_ca = client.public_value(flask_name, "api_ca_cert")

    def api_ready() -> bool:
        # 404 for the probe id: TLS verified as "api" by the CAS's API CA, and Redis answered
        return svc.https_status(o.api_port, api_ca, "api", _PROBE) == 404

    svc.wait_until(table, api, "the patient API", api_ready, o.ready_seconds)

    step(f"writing {layout.myenv} and {layout.cacert}")
    _write_env(layout, options, flask_name, redis_name)
    layout.cacert.write_text(api_ca)
    return Running(layout, flask_name, redis_name, options)


def _start_las(o: DemoOptions, layout: Layout, table: ProcessTable, step: _Stepper,
               client: DemoCAS) -> ServiceUsers:
    """Start the LAS, enrol it for the demo's sessions; who runs (and is pinned for) each
    service."""
    step(f"starting the LAS (quoting agent, simulation evidence) on {layout.las_socket}")
    las = table.start("las", svc.cloister_argv(
        "las", "serve", "--state", str(layout.las), "--socket", str(layout.las_socket)),
        svc.child_env({}), layout.logs / "las.log")
    svc.wait_until(table, las, "the LAS", lambda: svc.unix_open(layout.las_socket),
                   o.ready_seconds)
    # simulation evidence counts only from a quoting key the CAS knows: the demo's
    # identity (which creates its sessions) vouches for the LAS it just started
    client.enroll_platform(_platform_id(layout), "cloister demo LAS")
    users = service_users(layout)
    if users.separate:
        step.say(f"        Redis runs as uid {users.redis[0]}, the API as uid {users.api[0]}; "
                 "their sessions pin them")
    else:
        step.say(f"        the sessions pin uid {users.api[0]} and gid {users.api[1]}: this user "
                 f"runs both services ({users.shared_because}; started as root, each runs "
                 "under its own uid, as in compose and Helm)")
    return users


def _platform_id(layout: Layout) -> str:
    from cloister.attest import LasClient  # noqa: PLC0415 - only once per up

    return LasClient(str(layout.las_socket)).platform()["platform_id"]


def _seal(app_dir: Path, layout: Layout, client: DemoCAS, flask_name: str,
          say: Say) -> tuple[str, str, str]:
    """(fspf_path, key, tag): the existing sealed tree if the CAS still holds its key."""
    fspf_path = str(layout.fspf / "fspf.pb")
    digest = source_digest(app_dir)
    stored = client.get_session(flask_name)
    if stored is not None and Path(fspf_path).is_file() and layout.fspf_source.is_file() \
            and layout.fspf_source.read_text().strip() == digest:
        key = re.search(r"^\s*fspf_key:\s*([0-9a-fA-F]{64})\s*$", stored.text, re.M)
        tag = re.search(r"^\s*fspf_tag:\s*([0-9a-fA-F]{32})\s*$", stored.text, re.M)
        if key and tag and fspf.tag(fspf_path).lower() == tag.group(1).lower():
            say("        reusing the sealed tree (its key is in the flask session)")
            return fspf_path, key.group(1), tag.group(1)
    shutil.rmtree(layout.fspf, ignore_errors=True)
    result = fspf.seal(str(app_dir), str(layout.fspf))
    layout.fspf_source.write_text(digest + "\n")
    say(f"        sealed {result.files} files")
    return result.fspf_path, result.key_hex, result.tag_hex


def _store(client: DemoCAS, name: str, text: str) -> str:
    current = client.get_session(name)
    if current is None:
        client.post_session(text)
        return "created"
    if _PREDECESSOR.sub("\n", current.text) == text:
        return "unchanged"
    client.post_session(f"{text.rstrip()}\npredecessor: {current.hash}\n")
    return "updated (new certificates)"


def _write_env(layout: Layout, o: DemoOptions, flask_name: str, redis_name: str) -> None:
    lines = [
        f"# written by cloister demo up; use it with: source {layout.myenv}",
        f"export FLASK_SESSION={flask_name}",
        f"export REDIS_SESSION={redis_name}",
        # host only, as the seed's curl adds :8081 itself
        "export SCONE_CAS_ADDR=127.0.0.1",
        f"export CLOISTER_CAS_ADDR=127.0.0.1:{o.cas_port}",
        f"export CLOISTER_CAS_CERT={layout.cas_cert}",
        f"export CLOISTER_LAS_ADDR={layout.las_socket}",
        f"export URL=https://api:{o.api_port}",
    ]
    layout.myenv.write_text("\n".join(lines) + "\n")


def requests_to_try(running: Running) -> list[str]:
    """The seed's three requests (plus fetching the CA), for this demo's ports."""
    o, root = running.options, running.layout.root
    cas_port = "" if o.cas_port == 8081 else f":{o.cas_port}"
    url, resolve = f"https://api:{o.api_port}", f"--resolve api:{o.api_port}:127.0.0.1"
    form = ("fname=Jane&lname=Doe&address='123 Main Street'&city=Richmond&state=Washington"
            "&ssn=123-223-2345&email=nr@aaa.com&dob=01/01/2010&contactphone=123-234-3456"
            "&drugallergies='Sulpha, Penicillin, Tree Nut'"
            "&preexistingconditions='diabetes, hypertension, asthma'&dateadmitted=01/05/2010"
            "&insurancedetails='Primera Blue Cross'")
    fetch = ('curl -k -X GET "https://${SCONE_CAS_ADDR-cas}'
             + (cas_port or ":8081") + '/v1/values/session=$FLASK_SESSION"'
             " | jq -r .values.api_ca_cert.value > cacert.pem")
    return [
        f"cd {root} && source myenv",
        fetch,
        f'curl --cacert cacert.pem -X POST {url}/patient/patient_3 -d "{form}" {resolve}',
        f"curl --cacert cacert.pem -X GET {url}/patient/patient_3 {resolve}",
        f"curl --cacert cacert.pem -X GET {url}/score/patient_3 {resolve}",
    ]


def watch(running: Running, say: Say = print, poll: float = 0.5) -> str:
    """Block until a demo process ends (returns its name); Ctrl-C raises KeyboardInterrupt."""
    table = ProcessTable(running.layout.root)
    while True:
        for record in table.records():
            if not record.alive():
                say(f"{record.name} stopped unexpectedly; see {record.log}")
                for line in svc.log_tail(record.log):
                    say(f"  {line}")
                return record.name
        time.sleep(poll)
