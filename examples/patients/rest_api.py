"""Confidential patient records: a Flask REST API that stores patients in Redis.

The seed's service (scontain/flask_example), unchanged in spirit: it opens
its TLS files at fixed paths below ``/tls`` and reads ``REDIS_HOST`` /
``REDIS_PORT``, so it runs unmodified under ``cloister run`` (which makes
those files visible in memory only, after attestation).

Routes:
  POST /patient/<id>  form fields FIELDS -> 201, the stored record (+ id, score)
  GET  /patient/<id>  -> the record
  GET  /score/<id>    -> {"id", "score"}

Errors are JSON ``{"error": {"code", "message"}}``: 400 (missing fields,
named), 404 (unknown patient), 409 (patient exists), 413 (body too large),
503 (Redis unreachable).  Patient fields are never logged.
"""

from __future__ import annotations

import json
import logging
import os
import random
from typing import Any

import redis
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

FIELDS = (
    "fname", "lname", "address", "city", "state", "ssn", "email", "dob", "contactphone",
    "drugallergies", "preexistingconditions", "dateadmitted", "insurancedetails",
)
#: patient ids are Redis keys under this prefix
KEY_PREFIX = "patient:"
MAX_ID_LENGTH = 256

app = Flask(__name__)
# a patient record is a few hundred bytes; anything far larger is a mistake or an attack
app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
log = logging.getLogger("patients")

_db: redis.Redis | None = None


def db() -> redis.Redis:
    """One client (a connection pool) over mutual TLS, verified against the policy's Redis CA."""
    global _db  # noqa: PLW0603 - one lazily built pool per process
    if _db is None:
        _db = redis.Redis(
            host=os.environ.get("REDIS_HOST", "redis"),
            port=int(os.environ.get("REDIS_PORT", "6379")),
            ssl=True,
            ssl_certfile="/tls/client.crt",
            ssl_keyfile="/tls/client.key",
            ssl_ca_certs="/tls/redis-ca.crt",
            ssl_cert_reqs="required",
            ssl_check_hostname=True,
            socket_timeout=10,
            socket_connect_timeout=5,
            decode_responses=True,
        )
    return _db


def error(status: int, code: str, message: str, **extra: Any) -> Any:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    return jsonify(error=body), status


def check_id(patient_id: str) -> Any | None:
    if len(patient_id) > MAX_ID_LENGTH:
        return error(400, "bad_request", f"patient id longer than {MAX_ID_LENGTH} characters")
    return None


@app.post("/patient/<string:patient_id>")
def create_patient(patient_id: str) -> Any:
    bad = check_id(patient_id)
    if bad is not None:
        return bad
    missing = [name for name in FIELDS if not request.form.get(name)]
    if missing:
        return error(400, "missing_fields", "missing form fields: " + ", ".join(missing),
                     missing=missing)
    record: dict[str, Any] = {name: request.form[name] for name in FIELDS}
    record["id"] = patient_id
    record["score"] = random.random()  # noqa: S311 - a demo score, not a secret
    # SET NX: two concurrent POSTs of one id cannot both succeed
    if not db().set(KEY_PREFIX + patient_id, json.dumps(record), nx=True):
        return error(409, "exists", f"patient {patient_id} already exists")
    log.info("stored a patient record")
    return jsonify(record), 201


def load(patient_id: str) -> dict[str, Any] | None:
    text = db().get(KEY_PREFIX + patient_id)
    return None if text is None else dict(json.loads(str(text)))


@app.get("/patient/<string:patient_id>")
def get_patient(patient_id: str) -> Any:
    bad = check_id(patient_id)
    if bad is not None:
        return bad
    record = load(patient_id)
    if record is None:
        return error(404, "not_found", f"no patient {patient_id}")
    return jsonify(record)


@app.get("/score/<string:patient_id>")
def get_score(patient_id: str) -> Any:
    bad = check_id(patient_id)
    if bad is not None:
        return bad
    record = load(patient_id)
    if record is None:
        return error(404, "not_found", f"no patient {patient_id}")
    return jsonify(id=patient_id, score=record["score"])


@app.errorhandler(redis.exceptions.RedisError)
def redis_down(err: redis.exceptions.RedisError) -> Any:
    # the exception's text may name hosts, never patient data; keep it out of the answer
    log.warning("Redis unavailable: %s", type(err).__name__)
    return error(503, "unavailable", "the patient store is unavailable; try again later")


@app.errorhandler(HTTPException)
def http_error(err: HTTPException) -> Any:
    code = {413: "too_large", 404: "not_found", 405: "method_not_allowed"}.get(
        err.code or 500, "bad_request")
    return error(err.code or 500, code, err.description or err.name)


@app.errorhandler(Exception)
def unexpected(err: Exception) -> Any:
    log.error("internal error: %s", type(err).__name__)
    return error(500, "internal", "internal error")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    port = int(os.environ.get("API_PORT", "4996"))
    app.run(host="0.0.0.0",  # noqa: S104 - the seed serves on every interface
            port=port, threaded=True,
            ssl_context=("/tls/flask.crt", "/tls/flask.key"))
