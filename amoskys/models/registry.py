"""The model registry: a folder with one entry per trained model.

An entry is a folder named ``<model>-<UTC time of training>`` holding the model's files
(joblib, or a torch state dict for the deep models), ``model.onnx`` where a converter
supports the model, and ``card.json``: data source and hash, features, parameters,
training seconds, threshold and validation metrics. An entry is written under a
temporary name and renamed when complete, so a reader never sees half of one; entries
are never changed afterwards. The default registry is ``registry/`` inside the data
folder (the pipeline's output), so models and the data they learned from sit together.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from amoskys.errors import InputError, ModelError
from amoskys.models.base import Detector

CARD = "card.json"
REGISTRY_FOLDER = "registry"


@dataclass(frozen=True)
class Entry:
    id: str
    folder: Path
    card: dict

    @property
    def model(self) -> str:
        return self.card["model"]


def default_registry(data_dir: Path) -> Path:
    return data_dir / REGISTRY_FOLDER


class Registry:
    def __init__(self, folder: Path):
        self.folder = folder

    def add(self, model: Detector, card: dict, extra=None) -> Entry:
        """Save model with its card as a new entry; extra(folder) may add files (e.g. the ONNX export)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        entry_id, n = f"{model.name}-{stamp}", 1
        while (self.folder / entry_id).exists():
            n += 1
            entry_id = f"{model.name}-{stamp}-{n}"
        with self._whole(entry_id) as partial:
            files = model.save(partial)
            if extra is not None:
                files += extra(partial)
            card = {"id": entry_id, "model": model.name, "created": stamp, **card,
                    "files": sorted(str(f.relative_to(partial)) for f in files)}  # fmt: skip
            (partial / CARD).write_text(json.dumps(card, indent=2, default=float) + "\n")
        return Entry(entry_id, self.folder / entry_id, card)

    def copy_in(self, entry: Entry) -> Entry:
        """entry (of another registry) copied in as it is: whole, or not at all."""
        with self._whole(entry.id) as partial:
            shutil.copytree(entry.folder, partial)
        return Entry(entry.id, self.folder / entry.id, entry.card)

    @contextmanager
    def _whole(self, entry_id: str):
        """A fresh partial folder (not yet created) to write entry entry_id into, renamed into place when the
        block ends without an error: an entry is there whole, or not at all (``entries`` skips partial ones)."""
        partial = self.folder / f".{entry_id}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        yield partial
        partial.rename(self.folder / entry_id)

    def entries(self) -> list[Entry]:
        """Every complete entry, oldest first."""
        if not self.folder.is_dir():
            return []
        found = []
        for card_file in self.folder.glob(f"*/{CARD}"):
            if card_file.parent.name.startswith("."):  # a partial entry (``add``, ``copy_in``): not one yet
                continue
            try:
                card = json.loads(card_file.read_text())
            except (OSError, ValueError) as error:
                raise ModelError(f"unreadable model card {card_file}: {error}") from None
            found.append(Entry(card_file.parent.name, card_file.parent, card))
        return sorted(found, key=lambda e: (e.card.get("created", ""), e.id))

    def find(self, ref: str | None = None) -> Entry:
        """The entry with id ref, else the latest of model ref; without ref the latest bdh (or latest of any)."""
        entries = self.entries()
        if not entries:
            raise InputError(f"no trained models in {self.folder}: run `amoskys train` first")
        if ref is None:
            ensembles = [e for e in entries if e.model == "bdh"]
            return (ensembles or entries)[-1]
        if match := [e for e in entries if e.id == ref] or [e for e in entries if e.model == ref]:
            return match[-1]
        raise InputError(f"no model {ref!r} in {self.folder}; known: {', '.join(e.id for e in entries)}")

    def prune(self, keep: int) -> list[Entry]:
        """Delete all but the newest keep entries of each model; returns the deleted ones."""
        by_model: dict[str, list[Entry]] = {}
        for entry in self.entries():
            by_model.setdefault(entry.model, []).append(entry)
        gone = [entry for entries in by_model.values() for entry in entries[: max(0, len(entries) - keep)]]
        for entry in gone:
            shutil.rmtree(entry.folder)
        return gone

    def load(self, entry: Entry) -> Detector:
        from amoskys.models import detector_class

        return detector_class(entry.model).load(entry.folder)
