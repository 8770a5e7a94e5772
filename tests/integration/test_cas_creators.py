"""``cloister cas serve --creators FILE``: only listed identities create top-level sessions."""

from __future__ import annotations

from pathlib import Path

import pytest
from cas_harness import CAS, make_identity

from cloister import errors
from cloister.cas._server import read_creators

SESSION = """\
name: {name}
version: "0.3"
access_policy:
  create_sessions: [ANY]
secrets:
  - name: pw
    kind: ascii
"""


def test_only_listed_identities_create_top_level_sessions(tmp_path: Path) -> None:
    listed = make_identity(tmp_path / "ids", "listed")
    by_cert = make_identity(tmp_path / "ids", "by-cert")
    stranger = make_identity(tmp_path / "ids", "stranger")
    creators = tmp_path / "creators.txt"
    creators.write_text(f"# operators\n{listed.key_hash()}  # alice\n"
                        + by_cert.cert.read_text())
    cas = CAS(tmp_path / "cas", tmp_path / "cas.log", extra_args=("--creators", str(creators)))
    cas.start()
    try:
        assert cas.curl("/v1/sessions", identity=listed,
                        data=SESSION.format(name="team").encode()).status == 201
        assert cas.curl("/v1/sessions", identity=by_cert,
                        data=SESSION.format(name="other").encode()).status == 201
        refused = cas.curl("/v1/sessions", identity=stranger,
                           data=SESSION.format(name="mine").encode())
        assert refused.status == 403, refused.body
        assert "creators list" in refused.json()["error"]["message"]
        # inside a namespace the parent's create_sessions decides, not the CAS list
        assert cas.curl("/v1/sessions", identity=stranger,
                        data=SESSION.format(name="team/app").encode()).status == 201
    finally:
        cas.stop()


def test_a_creators_file_with_a_bad_line_is_refused_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "creators.txt"
    bad.write_text("a" * 64 + "\nnot-a-hash\n")
    with pytest.raises(errors.ConfigError, match="line 2"):
        read_creators(bad)
    bad.write_text("# nobody\n")
    with pytest.raises(errors.ConfigError, match="names no identity"):
        read_creators(bad)
