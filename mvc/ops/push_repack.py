"""Push sends the compact form: the chunks a push is about to send that are stored whole are
first rewritten, here, as deltas of their parent's chunk (issue 14; `push.repack`).

Between the transfer's planning and its copying (``transfer.Sending``), the fine-tuned chunks
of the versions being sent are paired with their parent's (or lineage base's) chunks by the
same rules as ``mvc repack`` (``ops.deltas``: same tensor, same piece, bounded acyclic chains,
level by level, each delta verified before it is written) and re-encoded in this store where
the delta is smaller. A pair is used only when its base is on the remote already or goes with
this push, so the remote never receives a delta it cannot read, nor a base it would not
otherwise get. Nothing is compressed that is not made a delta: a first push of a whole model
costs no more than the copy.

The rewrite is a repack of this store (ids never change; each envelope is replaced
atomically, so a push killed meanwhile leaves every object readable) and stays: the chunks are
compact here too. When another repack is running here, the push does not wait for it: it sends
what is stored.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

from mvc import codec
from mvc.errors import CorruptObject, LockTimeout
from mvc.faults import crashpoint
from mvc.ops import deltas as planner
from mvc.repo import Repo
from mvc.storage import lock
from mvc.transfer import Sending


@dataclass
class Packed:
    """What ``pack_for_push`` did: chunks examined, made deltas, their stored bytes before
    and after."""

    examined: int = 0
    deltas: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


def pack_for_push(repo: Repo, sending: Sending) -> Packed:
    """Re-encode as deltas the whole chunks of ``sending`` whose parent's chunk is on the
    remote or in ``sending``, where smaller; what was done."""
    result = Packed()
    pairs = [
        pair
        for pair in planner.candidate_pairs(repo.objects, sending.versions)
        if pair.chunk in sending.chunks
        and (pair.base in sending.chunks or sending.at_destination(pair.base))
    ]
    if not pairs:
        return result
    with ExitStack() as held:
        try:  # one delta-making repack at a time (ops.maintenance.repack)
            held.enter_context(
                lock.hold(os.path.join(repo.store_dir, "locks", "repack"), timeout=0)
            )
        except LockTimeout:
            return result  # one runs now: send what is stored rather than wait for it
        held.enter_context(repo.writing_objects())
        for level in planner.plan_levels(repo.objects, pairs):
            _encode_level(repo, level, result)
    return result


def _encode_level(repo: Repo, level: list[planner.Pair], result: Packed) -> None:
    def one(pair: planner.Pair) -> tuple[int, int, bool]:
        try:
            found = planner.encode_against(repo.objects, pair)
        except CorruptObject:
            # A damaged base (or chunk) here: the chunk goes as stored. The transfer verifies
            # what it sends (a damaged chunk still fails the push); a damaged base it does not
            # send is fsck's to report, and the remote's good copy is left alone.
            return 0, 0, False
        if found is None:
            return 0, 0, False
        parts, before, after = found
        if after >= before:
            return before, before, False
        repo.objects.replace_encoding(pair.chunk, parts)
        crashpoint("push.repack")
        return before, after, codec.is_delta(parts[0])

    with ThreadPoolExecutor(max_workers=int(repo.config.get("core.jobs"))) as pool:
        for before, after, delta in pool.map(one, level):
            result.examined += 1
            result.bytes_before += before
            result.bytes_after += after
            result.deltas += int(delta)
