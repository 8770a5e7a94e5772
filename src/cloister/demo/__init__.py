"""The confidential patient-records service on this machine, with no containers.

``up`` starts a CAS and a LAS, seals ``examples/patients`` (the Flask API),
stores the seed's two sessions (redis, flask) built from the templates in
``examples/patients/policies``, starts Redis and the API each under
``cloister run``, waits until the API answers over TLS verified with the
CAS-issued API CA, and writes ``DIR/myenv`` and ``DIR/cacert.pem``.
``down`` stops exactly the processes ``up`` started.

Evidence here is ``simulation`` (the LAS signs with a software key): it
shows which code was launched to someone who trusts this host, and nothing
against its administrator; the sessions say so by tolerating ``debug-mode``.
"""

from cloister.demo._layout import DemoOptions, Layout
from cloister.demo._up import Running, down, requests_to_try, up, watch

__all__ = ["DemoOptions", "Layout", "Running", "down", "requests_to_try", "up", "watch"]
