"""Session policies: load SCONE-compatible session YAML into typed, validated objects.

:func:`load_session` is the entry point; :func:`substitute_variables`
applies ``$VAR`` template values first (the CLI's ``-e`` / ``--use-env``).
"""

from cloister.policy._load import load_session, session_digest
from cloister.policy._model import (
    AccessPolicy,
    AttestationSecurity,
    AttestationVariant,
    ExportTarget,
    Image,
    ImageVolume,
    ImportSource,
    InjectionFile,
    Secret,
    SecretKind,
    Security,
    Service,
    Session,
    Signer,
    SubjectAltNames,
    Volume,
)
from cloister.policy._refs import Form, Reference, find_references, substitute
from cloister.policy._summary import summarize
from cloister.policy._template import substitute_variables

__all__ = [
    "AccessPolicy",
    "AttestationSecurity",
    "AttestationVariant",
    "ExportTarget",
    "Form",
    "Image",
    "ImageVolume",
    "ImportSource",
    "InjectionFile",
    "Reference",
    "Secret",
    "SecretKind",
    "Security",
    "Service",
    "Session",
    "Signer",
    "SubjectAltNames",
    "Volume",
    "find_references",
    "load_session",
    "session_digest",
    "substitute",
    "substitute_variables",
    "summarize",
]
