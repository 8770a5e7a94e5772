"""In-memory notes (a second module: imported from the sealed tree like the entry)."""

from __future__ import annotations

import itertools
import threading


class Notes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._notes: dict[int, str] = {}

    def add(self, text: str) -> int:
        with self._lock:
            note_id = next(self._ids)
            self._notes[note_id] = text
            return note_id

    def get(self, note_id: int) -> str | None:
        return self._notes.get(note_id)
