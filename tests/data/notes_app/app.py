"""A tiny notes service, unmodified for cloister: TLS files and a signing key at fixed paths.

POST /notes (form: text) -> 201 {"id", "sig"}; GET /notes/<id> -> {"id", "text", "sig"}.
``sig`` is an HMAC of the text under the key in /run/notes/signing-key (a secret the
policy generates), so it is stable across calls and unknown to whoever runs the host.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from flask import Flask, abort, jsonify, request
from notes_store import Notes

app = Flask(__name__)
notes = Notes()
with open("/run/notes/signing-key", "rb") as f:
    KEY = f.read().strip()


def sign(text: str) -> str:
    return hmac.new(KEY, text.encode(), hashlib.sha256).hexdigest()[:16]


@app.post("/notes")
def add_note():  # type: ignore[no-untyped-def]
    text = request.form["text"]
    return jsonify(id=notes.add(text), sig=sign(text)), 201


@app.get("/notes/<int:note_id>")
def get_note(note_id: int):  # type: ignore[no-untyped-def]
    text = notes.get(note_id)
    if text is None:
        abort(404)
    return jsonify(id=note_id, text=text, sig=sign(text))


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "4996")),
            ssl_context=("/tls/notes.crt", "/tls/notes.key"))
