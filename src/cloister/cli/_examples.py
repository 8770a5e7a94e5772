"""One example (or a few) for every command's ``--help`` (the epilog).

Keyed by the command as typed (argparse's ``prog``).  A new command adds its
line here; ``tests/unit/cli`` checks every command has one.
"""

from __future__ import annotations

EXAMPLES: dict[str, tuple[str, ...]] = {
    "cloister": (
        "cloister session check policy.yml -e MRENCLAVE=$(cloister measure)",
        "cloister session list -o json | jq -r '.sessions[]'",
    ),
    "cloister session": ("cloister session create policy.yml --use-env --cas cas:8081",),
    "cloister session check": ("cloister session check flask.yml -e FLASK_SESSION=flask-1",),
    "cloister session create": (
        "cloister session create redis.yml --use-env --cas cas:8081 --cas-cert cas-ca.pem",),
    "cloister session update": ("cloister session update redis.yml --use-env",),
    "cloister session read": ("cloister session read flask-1 -o json | jq -r .hash",),
    "cloister session list": ("cloister session list -o json | jq -r '.sessions[]'",),
    "cloister values": (
        "cloister values flask-1 api_ca_cert > cacert.pem",
        "cloister values flask-1 | jq -r .values.api_ca_cert.value",
    ),
    "cloister measure": ("cloister measure", "cloister measure redis-server"),
    "cloister las": ("cloister las serve --state /var/lib/cloister/las",),
    "cloister las serve": ("cloister las serve --socket /run/cloister/las.sock",
                           "cloister las serve --listen 127.0.0.1:18766   # simulation only",
                           "cloister las serve --evidence sev-snp "
                           "--quoter-option device=/dev/sev-guest"),
    "cloister las enroll": ("cloister las enroll --tpm device:/dev/tpmrm0 --show-pcrs",),
    "cloister las platform-id": ("cloister las platform-id --las /run/cloister/las.sock",),
    "cloister platform": ("cloister platform enroll --las /run/cloister/las.sock --cas cas:8081",),
    "cloister platform enroll": (
        "cloister platform enroll --las /run/cloister/las.sock --label node-1 --cas cas:8081 "
        "--cas-cert cas-ca.pem",
        "cloister platform enroll $(ssh node-1 cloister las platform-id) --label node-1",),
    "cloister platform list": (
        "cloister platform list -o json | jq -r '.platforms[].platform_id'",),
    "cloister platform remove": (
        "cloister platform remove $(ssh node-1 cloister las platform-id) --cas cas:8081",),
    "cloister cas": ("cloister cas serve --state /var/lib/cloister/cas",),
    "cloister cas serve": ("cloister cas serve --state ./cas-state --listen 0.0.0.0:8081",),
    "cloister cas show-certificate": (
        "cloister cas show-certificate --state ./cas-state > cas-ca.pem",),
    "cloister cas attest": ("cloister cas attest cas:8081 --cas-cert cas-ca.pem",),
    "cloister cas init": ("cloister cas init --state ./cas-state --seal shamir",),
    "cloister cas unseal": ("cloister cas unseal --cas cas:8081 --cas-cert cas-ca.pem",),
    "cloister cas rotate-key": ("cloister cas rotate-key --state ./cas-state",),
    "cloister cas migrate-state": ("cloister cas migrate-state --state ./cas-state --seal tpm",),
    "cloister cas migrate": (
        "cloister cas migrate --from ./cas-state --to postgresql://cloister@db:5432/cas",),
    "cloister fspf": ("cloister fspf create fs.fspf",),
    "cloister fspf create": ("cloister fspf create fs.fspf",),
    "cloister fspf addr": (
        "cloister fspf addr fs.fspf /fspf/encrypted-files --kernel /fspf/encrypted-files "
        "--encrypted",),
    "cloister fspf addf": (
        "cloister fspf addf fs.fspf /fspf/encrypted-files app/ /fspf/encrypted-files",),
    "cloister fspf encrypt": ("cloister fspf encrypt fs.fspf | awk '{print $9, $11}'",),
    "cloister fspf show": ("cloister fspf show --tag fs.fspf",),
    "cloister seal": ("cloister seal examples/patients --out /fspf/encrypted-files",
                      "cloister seal app --out sealed -o json | jq -r .fspf_tag"),
    "cloister run": (
        "CLOISTER_CONFIG_ID=flask-1/flask_restapi cloister run --cas cas:8081 "
        "--cas-cert cas-ca.pem",
        "CLOISTER_CONFIG_ID=redis-1/redis cloister run -- redis-server",
    ),
    "cloister demo": ("cloister demo up --detach",),
    "cloister demo up": ("cloister demo up --detach --dir .demo",),
    "cloister demo down": ("cloister demo down --dir .demo",),
    "cloister transform": (
        "cloister transform ./notes --entry app.py --inject /tls/app.crt=tls:crt",),
    "cloister attest": ("cloister attest verify report.bin --type sev-snp --collateral certs/",),
    "cloister attest verify": (
        "cloister attest verify report.bin --type sev-snp --collateral certs/ "
        "--at 2025-06-01T00:00:00Z",
        "cloister attest verify quote.dat --type tdx --collateral tdx-collateral/ "
        "| jq -r .measurement",),
    "cloister completion": (
        "source <(cloister completion bash)",
        "cloister completion fish > ~/.config/fish/completions/cloister.fish",
    ),
}


def epilog_for(prog: str) -> str | None:
    lines = EXAMPLES.get(prog)
    if not lines:
        return None
    return "example" + ("s" if len(lines) > 1 else "") + ":\n" + "\n".join(
        f"  {line}" for line in lines)
