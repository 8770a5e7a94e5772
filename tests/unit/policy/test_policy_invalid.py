"""Invalid sessions: each refused with its exact message at its exact line."""

from __future__ import annotations

import re

import pytest

from cloister.errors import PolicyError, TemplateError
from cloister.policy import load_session

M = "a" * 64

BASE = f"""\
name: s1
version: "0.3"
services:
  - name: app
    image_name: img
    mrenclaves: [{M}]
    command: python3 app.py
    environment:
      TOKEN: $$SCONE::token$$
images:
  - name: img
    injection_files:
      - path: /tls/app.crt
        content: $$SCONE::cert:crt$$
secrets:
  - name: token
    kind: ascii
  - name: key
    kind: private-key
  - name: ca
    kind: x509-ca
    private_key: key
  - name: cert
    kind: x509
    private_key: key
    issuer: ca
    dns: [api]
"""


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


CASES: list[tuple[str, str | bytes, str]] = [
    (
        "unknown top-level key",
        BASE + "secret: []\n",
        "line 28 column 1: unknown key 'secret' in the session; did you mean 'secrets'?",
    ),
    (
        "unknown service key",
        edit("    command:", "    comand:"),
        "line 7 column 5: unknown key 'comand' in a service; did you mean 'command'?",
    ),
    (
        "unknown secret key",
        edit("    issuer: ca", "    isuer: ca"),
        "line 26 column 5: unknown key 'isuer' in a secret; did you mean 'issuer'?",
    ),
    ("missing name", edit("name: s1\n", ""), "line 1 column 1: missing required key 'name'"),
    (
        "bad session name",
        edit("name: s1", "name: 'a b'"),
        "line 1 column 7: invalid session name 'a b': use 1-128 of A-Z a-z 0-9 _ - . ~, "
        "with / between namespace segments",
    ),
    (
        "wrong kind",
        edit("kind: ascii", "kind: password"),
        "line 17 column 11: secret 'token': unknown kind 'password'; use one of ascii, binary, "
        "private-key, x509, x509-ca, config-fragment",
    ),
    (
        "issuer not a CA",
        edit("    issuer: ca", "    issuer: token"),
        "line 26 column 13: issuer 'token' of secret 'cert' is a ascii, not a x509-ca",
    ),
    (
        "private_key not a key",
        edit("    private_key: key\n    issuer", "    private_key: token\n    issuer"),
        "line 25 column 18: private_key 'token' of secret 'cert' is a ascii, not a private-key",
    ),
    (
        "issuer unknown",
        edit("    issuer: ca", "    issuer: nope"),
        "line 26 column 13: issuer 'nope' of secret 'cert' is not a secret of this session",
    ),
    (
        "cyclic issuers",
        BASE + "  - name: ca2\n    kind: x509-ca\n    private_key: key\n"
        "    issuer: ca3\n  - name: ca3\n    kind: x509-ca\n    private_key: key\n"
        "    issuer: ca2\n",
        "line 31 column 13: issuer cycle: ca2 -> ca3 -> ca2",
    ),
    (
        "self issuer",
        edit(
            "    private_key: key\n  - name: cert",
            "    private_key: key\n    issuer: ca\n  - name: cert",
        ),
        "line 23 column 13: secret 'ca' names itself as issuer: omit 'issuer' for a self-signed CA",
    ),
    (
        "relative injection path",
        edit("path: /tls/app.crt", "path: tls/app.crt"),
        "line 13 column 15: path 'tls/app.crt' is relative: use an absolute path",
    ),
    (
        "dotdot injection path",
        edit("path: /tls/app.crt", "path: /tls/../etc/passwd"),
        "line 13 column 15: path '/tls/../etc/passwd' contains '..': use a normalized path",
    ),
    (
        "unnormalized path",
        edit("path: /tls/app.crt", "path: /tls//app.crt"),
        "line 13 column 15: path '/tls//app.crt' is not normalized: write '/tls/app.crt'",
    ),
    (
        "duplicate secret names",
        BASE + "  - name: token\n    kind: binary\n",
        "line 28 column 11: duplicate secret name 'token' (first at line 16 column 11)",
    ),
    (
        "duplicate yaml key",
        edit("    kind: ascii", "    kind: ascii\n    kind: binary"),
        "invalid YAML",
    ),  # replaced below by the precise message
    (
        "unknown secret reference",
        edit("$$SCONE::token$$", "$$SCONE::tokn$$"),
        "line 9 column 14: $$SCONE::tokn$$ refers to unknown secret 'tokn'",
    ),
    (
        "binary secret in environment",
        edit("kind: ascii", "kind: binary"),
        "line 9 column 14: $$SCONE::token$$ renders binary data, which cannot be used in "
        "environment: use a text form such as :hex",
    ),
    (
        "binary der form in command",
        edit("command: python3 app.py", "command: python3 app.py $$SCONE::cert:crt:der$$"),
        "line 7 column 14: $$SCONE::cert:crt:der$$ renders binary data, which cannot be used in "
        "command: use a text form such as :hex",
    ),
    (
        "suffix wrong for kind",
        edit("$$SCONE::token$$", "$$SCONE::token.crt$$"),
        "line 9 column 14: $$SCONE::token.crt$$: suffix '.crt' does not apply to ascii secret "
        "'token' (allowed: (none))",
    ),
    (
        "ANY mixed",
        BASE + "access_policy:\n  read: [ANY, CREATOR]\n",
        "line 29 column 9: access_policy.read: ANY must be the only entry",
    ),
    (
        "NONE mixed",
        BASE + "access_policy:\n  update: [CREATOR, NONE]\n",
        "line 29 column 11: access_policy.update: NONE must be the only entry",
    ),
    (
        "alias bomb",
        "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\nname: s\n",
        "YAML anchor &a at line 1 column 4: anchors and aliases are not allowed in a session",
    ),
    (
        "non-UTF-8 bytes",
        b"name: s\xff\n",
        "session is not UTF-8: invalid byte at offset 7; save it as UTF-8",
    ),
    (
        "missing attestation",
        edit(f"    mrenclaves: [{M}]\n", ""),
        "line 4 column 5: service 'app' has no attestation: list its measurement under "
        "'mrenclaves' or 'attestation', or set security.attestation.mode: none",
    ),
    (
        "bad mrenclave",
        edit(f"mrenclaves: [{M}]", "mrenclaves: [abc]"),
        "line 6 column 17: invalid mrenclave 'abc': expected 64 hex digits",
    ),
    (
        "unknown image",
        edit("image_name: img", "image_name: imgx"),
        "line 5 column 17: service 'app' names image 'imgx', which is not defined (images: img)",
    ),
    (
        "key_type unknown",
        edit("    kind: private-key", "    kind: private-key\n    key_type: P-521"),
        "line 20 column 15: secret 'key': unknown key_type 'P-521'; use one of P-256, P-384, "
        "Ed25519, RSA-2048, RSA-3072",
    ),
    (
        "size on a key",
        edit("    kind: private-key", "    kind: private-key\n    size: 32"),
        "line 20 column 11: secret 'key': 'size' applies to ascii and binary",
    ),
    (
        "size zero",
        edit("    kind: ascii", "    kind: ascii\n    size: 0"),
        "line 18 column 11: secret 'token': size 0 not in 1..4096",
    ),
    (
        "endpoint invalid",
        edit("    dns: [api]", "    dns: [api]\n    endpoint: both"),
        "line 28 column 15: secret 'cert': endpoint 'both' is not server|client",
    ),
    (
        "client cert with dns",
        edit("    dns: [api]", "    dns: [api]\n    endpoint: client"),
        "line 27 column 10: secret 'cert': a client certificate takes no dns names",
    ),
    (
        "bad san",
        edit("    dns: [api]", "    san: ['uri:x']"),
        "line 27 column 11: secret 'cert': san entry 'uri:x' must start with 'dns:' or 'ip:'",
    ),
    (
        "bad valid_for",
        edit("    dns: [api]", "    valid_for: forever"),
        "line 27 column 16: secret 'cert': invalid duration 'forever': write a positive count and "
        "a unit, e.g. '90 days' or '59d'",
    ),
    (
        "cert without private key",
        edit("    private_key: key\n    issuer", "    issuer"),
        "line 23 column 5: secret 'cert' (x509) needs 'private_key'",
    ),
    (
        "unknown toleration",
        BASE + "security:\n  attestation:\n    tolerate: [debug]\n",
        "line 30 column 15: unknown toleration 'debug'; use one of debug-mode, hyperthreading, "
        "insecure-igpu, software-hardening-needed, aepic-leak, insecure-configuration, "
        "outdated-tcb, maa-managed-tcb",
    ),
    (
        "unknown attestation mode",
        BASE + "security:\n  attestation:\n    mode: off\n",
        "line 30 column 11: security.attestation.mode must be a string, got bool False",
    ),
    (
        "advisory that is not an Intel one",
        BASE + "security:\n  attestation:\n    ignore_advisories: [CVE-1]\n",
        "line 30 column 24: invalid advisory 'CVE-1': expected INTEL-SA-NNNNN or '*'",
    ),
    (
        "tpm_pcrs bad value",
        BASE + "security:\n  attestation:\n    tpm_pcrs: {7: abc}\n",
        "line 30 column 15: PCR 7 value 'abc' is not 64 hex digits (a SHA-256 PCR)",
    ),
    (
        "tpm_pcrs bad index",
        BASE + "security:\n  attestation:\n    tpm_pcrs: {x: abc}\n",
        "line 30 column 15: tpm_pcrs key 'x' is not a PCR index (0..23)",
    ),
    (
        "undeclared volume",
        edit("    injection_files:", "    volumes:\n      - {name: data, path: /data}\n"
             "    injection_files:"),
        "line 11 column 5: image 'img' mounts volume 'data', which is not declared under the "
        "top-level 'volumes:'",
    ),
    (
        "volume with a malformed explicit key",
        BASE + "volumes:\n  - name: data\n    fspf_key: abc\n",
        "line 30 column 15: invalid fspf_key (3 characters): expected 64 hex digits",
    ),
    (
        "relative volume path",
        edit("    injection_files:", "    volumes:\n      - {name: data, path: data}\n"
             "    injection_files:") + "volumes:\n  - name: data\n",
        "line 13 column 28: path 'data' is relative: use an absolute path",
    ),
    (
        "environment not a mapping",
        edit("    environment:\n      TOKEN: $$SCONE::token$$\n", "    environment: [a]\n"),
        "line 8 column 18: service 'app'.environment must be a mapping, got seq",
    ),
    (
        "bad fspf_key",
        edit("    command:", "    fspf_key: 1234\n    command:"),
        "line 7 column 15: invalid fspf_key (4 characters): expected 64 hex digits",
    ),
    (
        "bad fspf_tag",
        edit("    command:", "    fspf_tag: zz\n    command:"),
        "line 7 column 15: invalid fspf_tag 'zz': expected 32 hex digits",
    ),
    (
        "relative pwd",
        edit("    command:", "    pwd: app\n    command:"),
        "line 7 column 10: path 'app' is relative: use an absolute path",
    ),
    (
        "permission not octal",
        edit(
            "content: $$SCONE::cert:crt$$", "content: $$SCONE::cert:crt$$\n        permission: rw"
        ),
        "line 15 column 21: /tls/app.crt: permission 'rw' is not an octal file mode like 0600",
    ),
    (
        "predecessor not a hash",
        "predecessor: abc\n" + BASE,
        "line 1 column 14: predecessor 'abc' is not a session hash (64 hex)",
    ),
    ("not a mapping", "- a\n- b\n", "line 1 column 1: the session must be a mapping, got a list"),
    (
        "unknown escape",
        edit("$$SCONE::token$$", "$$SCONE::token|escape(xml)$$"),
        "line 9 column 14: unsupported encoding pipe 'escape(xml)' in "
        "$$SCONE::token|escape(xml)$$: only |escape(json) is known",
    ),
    (
        "export to nowhere",
        edit("    kind: ascii", "    kind: ascii\n    export:\n      - {}"),
        "line 19 column 9: an export names exactly one of 'session' or 'namespace'",
    ),
    (
        "import missing secret",
        BASE + "  - name: imp\n    import:\n      session: other\n",
        "line 30 column 7: secret 'imp'.import needs both 'session' and 'secret'",
    ),
]
# the YAML layer's own wording for a duplicate key
CASES[15] = (
    CASES[15][0],
    CASES[15][1],
    "duplicate key 'kind' at line 18 column 5 (first at line 17 column 5)",
)


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_policy_is_refused_with_its_line(text: str | bytes, expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_session(text)
    assert caught.value.lines()[0] == expected


def _keys_of_base() -> list[tuple[int, str]]:
    """(line index, key) of every mapping key in BASE."""
    found = []
    for index, line in enumerate(BASE.splitlines()):
        m = re.match(r"\s*(?:- )?([a-z_]+):", line)
        if m:
            found.append((index, m.group(1)))
    return found


@pytest.mark.parametrize(("index", "key"), _keys_of_base(),
                         ids=[f"{i}-{k}" for i, k in _keys_of_base()])
def test_a_typo_in_any_key_is_refused_and_named(index: int, key: str) -> None:
    """Every key of a valid session, misspelt (a letter doubled): refused, never ignored."""
    lines = BASE.splitlines(keepends=True)
    typo = key[0] + key
    lines[index] = lines[index].replace(f"{key}:", f"{typo}:", 1)
    with pytest.raises(PolicyError) as caught:
        load_session("".join(lines))
    text = "\n".join(caught.value.lines())
    assert f"unknown key '{typo}'" in text, text
    assert f"did you mean '{key}'" in text, text


def test_base_session_is_valid() -> None:
    assert load_session(BASE).name == "s1"


def test_every_problem_is_reported_at_once() -> None:
    text = (
        edit("kind: ascii", "kind: password")
        .replace("comand", "x")
        .replace("    issuer: ca", "    isuer: ca")
    )
    with pytest.raises(PolicyError) as caught:
        load_session(text)
    assert len(caught.value.lines()) == 2
    assert "unknown kind 'password'" in caught.value.lines()[0]
    assert "unknown key 'isuer'" in caught.value.lines()[1]


def test_missing_template_variables_name_each_with_position() -> None:
    with pytest.raises(TemplateError) as caught:
        load_session("name: $SESSION\nversion: ${VERSION}\n", variables={})
    assert caught.value.lines() == [
        "Value for variable $SESSION is missing at line 1 column 7: "
        "pass it with -e NAME=VALUE or --use-env",
        "Value for variable $VERSION is missing at line 2 column 10",
    ]


def test_scone_references_survive_substitution() -> None:
    text = BASE.replace("name: s1", "name: $NAME")
    session = load_session(text, variables={"NAME": "s2"})
    assert session.services[0].environment["TOKEN"] == "$$SCONE::token$$"


def test_variables_in_comments_are_neither_required_nor_substituted() -> None:
    text = (
        "# fill in $UNUSED_IN_COMMENT before use\n"
        "name: $NAME  # e.g. $ALSO_IGNORED\n"
        'version: "0.3"\n'
        "images:\n  - name: img\n    injection_files:\n      - path: /a\n"
        "        content: |\n          # not a comment: $INSIDE\n"
    )
    session = load_session(text, variables={"NAME": "n1", "INSIDE": "v"})
    assert session.name == "n1"
    assert session.images[0].injection_files[0].content == "# not a comment: v\n"


def test_an_alias_heavy_template_is_still_refused_quickly() -> None:
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: [*c, *c]\nname: $N\n"
    with pytest.raises(PolicyError, match="anchors and aliases are not allowed"):
        load_session(bomb, variables={"N": "n"})


def test_binary_value_must_be_hex_at_load_time() -> None:
    with pytest.raises(PolicyError) as caught:
        load_session(edit("    kind: ascii", "    kind: binary\n    value: zz-not-hex"))
    assert caught.value.lines()[0] == (
        "line 18 column 12: secret 'token': a binary value is written as hex digits "
        "(an even number of them)")
