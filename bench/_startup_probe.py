"""Child process of the start-up breakdown: ``cloister run``'s steps, each timed.

Does what :func:`cloister.runtime.run` does for a Python service — measure,
attest, receive the configuration, open the sealed tree, run the program —
and writes one JSON line of step times (seconds since ``BENCH_T0``, the
parent's ``time.time()`` at launch) to the file named by ``BENCH_TIMES``
before the program starts.  The headline start-up figure uses the real
``cloister run``; this probe only splits it into parts.
"""

import json
import os
import sys
import time

T0 = float(os.environ.pop("BENCH_T0"))
OUT = os.environ.pop("BENCH_TIMES")
marks = {"interpreter": time.time() - T0}

from cloister import fspf  # noqa: E402
from cloister.attest import measure  # noqa: E402
from cloister.runtime import RunSettings  # noqa: E402
from cloister.runtime._attest import fetch_config  # noqa: E402
from cloister.runtime._python import open_tree, run_python  # noqa: E402

marks["runtime loaded"] = time.time() - T0
settings = RunSettings.from_env()
measurement = measure()
marks["measured"] = time.time() - T0
tag = fspf.tag(settings.fspf_path) if settings.fspf_path else None
config, timings = fetch_config(settings, measurement, tag)
marks["attested"] = time.time() - T0
config = config.with_host_values([], dict(os.environ))
tree = open_tree(config)
marks["tree opened"] = time.time() - T0
marks.update({"nonce": timings.nonce, "quote": timings.quote, "decision": timings.decision})
with open(OUT, "w") as fh:
    fh.write(json.dumps(marks))
sys.exit(run_python(config, tree))
