"""What the Prometheus metrics cost a message (issue: "negligible on the message path").

The exact calls livechat makes for one stored-and-delivered message when every batch holds one
send (the worst case: batches amortise the per-batch ones), on a real ``livechat.metrics.Metrics``,
timed in this process. The chat scenario divides it by the server's measured CPU per message.
"""

from __future__ import annotations

import timeit

from livechat.metrics import Metrics

ROUNDS = 200_000


def metrics_us_per_message(rounds: int = ROUNDS) -> float:
    metrics = Metrics()

    def one_message() -> None:
        metrics.writer_batch.observe(1)  # MessageService.on_batch
        metrics.observe_db("ConversationRepo.get_many", 0.0012)  # the batch's two database operations
        metrics.observe_db("MessageRepo.insert_ordered", 0.0015)
        metrics.messages_stored.inc(1)  # MessageService.on_stored
        metrics.messages_delivered.inc(1)  # Hub: the room's NEW_MESSAGE

    best = min(timeit.repeat(one_message, number=rounds, repeat=3))
    return best / rounds * 1e6
