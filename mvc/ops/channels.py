"""Reading channels: a channel's current deployment record, its chain of earlier records, the
arm a ``model@channel[:arm]`` spec names, the list of channels, and the tags that name versions
for people. Reads only; moves are in ``mvc.ops.deploy``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from mvc.annotations import deprecation_of as annotated_deprecation
from mvc.deployment.names import ModelTags, Names
from mvc.deployment.records import STABLE, Arm, Record, decode_record, serving_arm
from mvc.errors import NotFound
from mvc.ids import ObjectId
from mvc.jsonshape import JsonShaped
from mvc.ops.annotate import chain as annotation_chain
from mvc.refnames import CHANNELS, TAGS, RefName, channel, validate_model
from mvc.repo import Repo
from mvc.specs import did_you_mean


def load_record(repo: Repo, oid: str) -> Record:
    return decode_record(repo.objects.get_meta(oid), oid)


def channel_ref(model: str, name: str) -> RefName:
    return channel(model, name)


def current(repo: Repo, model: str, name: str) -> Record | None:
    record_id = repo.refs.get(channel_ref(model, name))
    return load_record(repo, record_id) if record_id else None


def require_current(repo: Repo, model: str, name: str) -> Record:
    record = current(repo, model, name)
    if record is None:
        suggestion = did_you_mean(name, [r.name for r in repo.refs.list_refs(CHANNELS, model)])
        create = f"create it with `mvc channel set {model} {name} REV`"
        raise NotFound(
            f"channel {name!r} of model {model!r} does not exist",
            hint=f"{suggestion} Or {create}" if suggestion else create,
        )
    return record


def chain(repo: Repo, record: Record) -> Iterator[Record]:
    """The record and its predecessors, newest first (ends early where a partial pull left
    older records out)."""
    current_record: Record | None = record
    while current_record is not None:
        yield current_record
        previous = current_record.previous
        try:
            current_record = load_record(repo, previous) if previous else None
        except NotFound:
            return


def arm_for(repo: Repo, model: str, name: str, label: str = STABLE) -> Arm:
    """The arm ``model@name[:label]`` means (``stable`` is the first arm during an A/B test)."""
    return serving_arm(require_current(repo, model, name), label)


@dataclass
class ChannelSummary(JsonShaped):
    model: str
    channel: str
    record: Record


def list_channels(repo: Repo, model: str | None = None) -> list[ChannelSummary]:
    if model is not None:
        validate_model(model)
    found = []
    for ref in repo.refs.list_refs("channels", model):
        record = current(repo, ref.model, ref.name)
        if record is not None:
            found.append(ChannelSummary(ref.model, ref.name, record))
    return found


# --- tags: names for people, deprecations -------------------------------------------------------


def load_model_tags(repo: Repo, model: str) -> ModelTags:
    """A model's tags. A ``deprecated/*`` tag (older stores) no longer counts once the
    version's deprecation is lifted (``mvc deprecate --lift``): the annotation is newer."""

    def tags() -> Iterator[tuple[str, ObjectId, str]]:
        for ref in repo.refs.list_refs(TAGS, model):
            entry = repo.refs.latest(ref)
            if entry is not None and entry.new:
                yield ref.name, entry.new, entry.why

    found = ModelTags.from_tags(tags())
    lifted = {v for v in found.deprecated if _lifted(repo, model, v)}
    if not lifted:
        return found
    still = {v: why for v, why in found.deprecated.items() if v not in lifted}
    return ModelTags(found.names, still)


def _lifted(repo: Repo, model: str, version: ObjectId) -> bool:
    notes = annotation_chain(repo, model, version)
    return any(n.deprecation for n in notes) and annotated_deprecation(notes) is None


def load_names(repo: Repo, models: Iterable[str]) -> Names:
    """A snapshot of the tags of these models (what a planner needs to name versions)."""
    return Names({m: load_model_tags(repo, m) for m in dict.fromkeys(models)})


class _StoreTags(Mapping[str, ModelTags]):
    """Each model's tags, read from the store the first time they are asked for."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self._loaded: dict[str, ModelTags] = {}

    def __getitem__(self, model: str) -> ModelTags:
        if model not in self._loaded:
            self._loaded[model] = load_model_tags(self.repo, model)
        return self._loaded[model]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded)

    def __len__(self) -> int:
        return len(self._loaded)


class Namer(Names):
    """Short human names for versions of any model of a store, read as they are needed."""

    def __init__(self, repo: Repo) -> None:
        super().__init__(_StoreTags(repo))
