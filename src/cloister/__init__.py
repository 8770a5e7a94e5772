"""cloister: run unmodified Python services confidentially.

Public modules: :mod:`cloister.errors`, :mod:`cloister.policy`,
:mod:`cloister.secrets`, :mod:`cloister.cas`, :mod:`cloister.attest`,
:mod:`cloister.fspf`, :mod:`cloister.runtime`.  Everything under a
``_``-prefixed name is private.
"""

__version__ = "0.1.0"
