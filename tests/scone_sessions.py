"""Small sessions in SCONE's documented form (SconeDocs, CAS_session_lang_0_3), one per feature.

Each is a complete session text; ``{M}`` is a measurement the tests fill in.
The forms follow the examples of SCONE's session language page (v0.3.11).
"""

from __future__ import annotations

M = "a" * 64
SIGNER = "1190831f4e21529d6702681f2906d5a27cc7cf1900bc323cd1cdedb2dc27edbd"

HEAD = 'name: demo\nversion: "0.3.10"\n'
SERVICE = f"""\
services:
  - name: app
    mrenclaves: [{M}]
    command: python3 app.py
"""


def session(body: str, *, head: str = HEAD, service: str = SERVICE) -> str:
    return head + service + body


#: feature → a session using it, as SCONE documents it
FEATURES: dict[str, str] = {
    "otp in security.attestation": session("""\
security:
  attestation:
    tolerate: [debug-mode]
    one_time_password_shared_secret: BASE32SECRET3232BASE32SECRET3232
"""),
    "otp per service, from a binary secret": HEAD + f"""\
services:
  - name: app
    mrenclaves: [{M}]
    command: python3 app.py
    one_time_password_shared_secret: $$SCONE::otp_shared_secret:base32nopad$$
secrets:
  - name: otp_shared_secret
    kind: binary
    size: 20
""",
    "config-fragment in a service's attestation": HEAD + f"""\
services:
  - name: loadbalancer
    command: python3 lb.py
    attestation:
      - mrenclave:
          - {M}
          - $$SCONE::mrenclave_list$$
      - $$SCONE::attestation_config_part$$
secrets:
  - name: mrenclave_list
    kind: config-fragment
    value:
      - {"b" * 64}
      - {"c" * 64}
  - name: attestation_config_part
    kind: config-fragment
    value:
      signer:
        mrsigner: {SIGNER}
        isvprodid: 213
        isvsvn_min: 13
""",
    "config-fragment imported for access_policy": session("""\
access_policy: $$SCONE::external_policy$$
secrets:
  - name: external_policy
    kind: config-fragment
    import:
      session: policy_admin
      secret: shared_access_policy
"""),
    "security.service_access_token": session("""\
security:
  service_access_token: j765WyMWTKksiqWbBuuc
"""),
    "volume with explicit fspf_key and fspf_tag": session("""\
volumes:
  - name: my_database
    fspf_key: f843051d21afa9e52a5b54a708a8032bc49581e982696a81393b8da4a32d00b8
    fspf_tag: 8d8fbe332fb9c893020be791ccd3e8a8
"""),
    "volume export": session("""\
volumes:
  - name: my_database
    export:
      - session: another-session
      - to:
          session: web_server
        update_policy: ephemeral
        volume_alias: output
"""),
    "volume import": session("""\
volumes:
  - name: their_database
    import:
      session: the_exporting_session
      volume: my_database
"""),
    "relative session paths": session("""\
secrets:
  - name: shared_key
    kind: private-key
    import:
      session: ../key_owner
      secret: key
  - name: token
    kind: ascii
    export:
      session: ./nested
""", head='name: team/app\nversion: "0.3.10"\n'),
    "security.singleton_enclaves": session("""\
security:
  singleton_enclaves: true
"""),
    "\\@\\@NAME host variables": HEAD + f"""\
services:
  - name: app
    mrenclaves: [{M}]
    command: ./print-arg-env arg1 @@1
    environment:
      \\@\\@NAME: SESSION_VALUE
""",
    "image names with : and /": HEAD + f"""\
services:
  - name: app
    mrenclaves: [{M}]
    image_name: registry/app:tag
images:
  - name: registry/app:tag
  - name: volume-demo:1.0
""",
    "SCONE durations": session("""\
secrets:
  - name: key
    kind: private-key
  - name: ca
    kind: x509-ca
    private_key: key
    valid_for: 3560d
  - name: short
    kind: x509
    private_key: key
    issuer: ca
    valid_for: 59d
  - name: yearly
    kind: x509
    private_key: key
    issuer: ca
    valid_for: 1 year
"""),
    "ignore_advisories '*' without debug-mode": session("""\
security:
  attestation:
    tolerate: [outdated-tcb]
    ignore_advisories: "*"
"""),
}

#: SCONE features cloister's CAS cannot serve: feature name (as the warning names it) → session
UNSERVED: dict[str, str] = {
    "security.attestation.mode maa": session("""\
security:
  attestation:
    mode: maa
    url: https://sharedweu.weu.attest.azure.net
    tolerate: [debug, maa-managed-tcb]
"""),
    "aad-token secrets": session("""\
secrets:
  - name: ad_token_1
    kind: aad-token
    tenant_id: e6c9c526-f1aa-4e0d-b207-50bad9a89d21
    client_id: 3f6a210e-83b4-4217-9eee-4f707d8aeeb3
    application_secret: "dGmbyTBE4JNAN3JJobeD"
"""),
    "'import_akv' in a secret": session("""\
secrets:
  - name: db_encryption_key
    kind: binary
    import_akv:
      vault: myvaultname.vault.azure.net
      secret_name: abc
"""),
    "pgp-key secrets": session("""\
secrets:
  - name: my_message_encryption_key
    kind: pgp-key
"""),
    "'persistency' in a service": HEAD + f"""\
services:
  - name: app
    mrenclaves: [{M}]
    persistency: None
""",
    "creator signer": session("""\
creator:
  signer: |
    -----BEGIN PUBLIC KEY-----
    MCowBQYDK2VwAyEAOsufQ7RCOXueVLQBpk7Y44GAaj+LzPbmHfdr/TPdlrE=
    -----END PUBLIC KEY-----
"""),
}

_NOT_PEM = "this is not a certificate"

#: accepted by cloister before, wrong by SCONE's rules: case → (session, the rule's message part)
SHOULD_NOT_LOAD: dict[str, tuple[str, str]] = {
    "version banana": (
        session("", head='name: demo\nversion: "banana"\n'),
        "version 'banana' is not a SCONE session language version",
    ),
    "version 0.1": (
        session("", head='name: demo\nversion: "0.1"\n'),
        "version 0.1 is SCONE's old session language",
    ),
    "version 0.2": (
        session("", head="name: demo\nversion: 0.2\n"),
        "version 0.2 is SCONE's old session language",
    ),
    "missing version": (
        session("", head="name: demo\n"),
        "the session has no version, which SCONE reads as 0.1",
    ),
    "signer without isvprodid": (
        HEAD + f"""\
services:
  - name: app
    attestation:
      signer:
        mrsigner: {SIGNER}
""",
        "signer needs 'isvprodid' (SCONE: a signer lists its mrsigner and a product ID)",
    ),
    "dns on an x509-ca": (
        session("""\
secrets:
  - name: key
    kind: private-key
  - name: ca
    kind: x509-ca
    private_key: key
    dns: [ca.example.com]
"""),
        "'dns' applies to end-entity certificates only (x509), not to an x509-ca",
    ),
    "san on an x509-ca": (
        session("""\
secrets:
  - name: key
    kind: private-key
  - name: ca
    kind: x509-ca
    private_key: key
    san: ["dns:ca.example.com"]
"""),
        "'san' applies to end-entity certificates only (x509), not to an x509-ca",
    ),
    "valid_for on an imported certificate": (
        session("""\
secrets:
  - name: cert
    kind: x509
    valid_for: 90 days
    import:
      session: other
      secret: cert
"""),
        "valid_for does not apply to an imported certificate",
    ),
    "valid_for on an explicit certificate": (
        session(f"""\
secrets:
  - name: cert
    kind: x509
    valid_for: 90 days
    value: "{_NOT_PEM}"
"""),
        "valid_for does not apply to a certificate with an explicit value",
    ),
    "explicit x509 value not PEM": (
        session(f"""\
secrets:
  - name: cert
    kind: x509
    value: "{_NOT_PEM}"
"""),
        "explicit value of x509 secret 'cert' is not a PEM certificate",
    ),
    "explicit private-key value not PEM": (
        session("""\
secrets:
  - name: key
    kind: private-key
    value: "not a key"
"""),
        "explicit value of private-key secret 'key' is not a PEM private key",
    ),
}

UNSERVED.update({
    "signer entries in access_policy.update": session("""\
access_policy:
  update:
    - signer: |
        -----BEGIN PUBLIC KEY-----
        MCowBQYDK2VwAyEAOsufQ7RCOXueVLQBpk7Y44GAaj+LzPbmHfdr/TPdlrE=
        -----END PUBLIC KEY-----
"""),
    "governance in access_policy.update": session("""\
access_policy:
  read: NONE
  update:
    require-at-least-2:
      - signer: $voter1
      - signer: $voter2
"""),
    "a session on another CAS in secret 'token'.export": session("""\
secrets:
  - name: token
    kind: ascii
    export:
      - cas.example.com/cas_software_key=3AC5RSbL73aVVf98m2UMTN2BFsQv6eQufi5B,session=B
"""),
    "secret_config.store_in !akv": session("""\
secret_config:
  store_in: !akv
    token: $$SCONE::my_aad_token$$
    vault: https://example.vault.microsoftazure.de
"""),
    "'trusted_scone_qe_pubkeys' in security.attestation": session("""\
security:
  attestation:
    trusted_scone_qe_pubkeys: ["E37F149AE30896E314A2859874C5A9C7803FB3187B99F5D08E526B1C0396507C"]
"""),
})

FEATURES.update({
    "secret_config.store_in !cas": session("secret_config:\n  store_in: !cas\n"),
    "URL short form export on this CAS": session(f"""\
secrets:
  - name: token
    kind: ascii
    export:
      - /session=company-storage,session_hash={"a" * 64}
"""),
    "fspf_update_policy": HEAD + f"""\
services:
  - name: app
    mrenclaves: [{M}]
    fspf_path: /main.fspf
    fspf_key: "66e7935397249112d1148e6ce98a396a8c96b3b0ae70708c16ff284c66f0821e"
    fspf_tag: "5a0fe9bdcfed5c0391a707e05f6cfbeb"
    fspf_update_policy: no_rollback_protection
""",
})
