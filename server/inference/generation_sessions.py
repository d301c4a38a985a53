"""Generation jobs decoded continuously: a session that later jobs join between steps.

Where the model decodes continuously (`generate_continuously`), a batch of generation jobs
is a session: generation jobs that arrive while it decodes join it between steps (any
`max_new_tokens`, where they fit), each row answers as soon as it ends, and jobs that could
not join run next. Joining stops once any other kind of job waits, so nothing is overtaken
for long. Joiners come from the `InferenceQueue`'s own waiting jobs, so a session is given
its queue and the jobs it set aside rather than a copy of them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence

from fakescope.device_memory import is_out_of_memory
from fakescope.joining import AnswerRequest, JoinInbox
from server.inference.batch_caps import MemoryShortage
from server.inference.model_thread import ModelThread
from server.inference.queue_jobs import (
    OUT_OF_MEMORY_ANSWERING,
    DeviceMemoryError,
    GenerateJob,
    Job,
    QueueObserver,
    answer_request,
    fail_jobs,
)

# generate_continuously(requests, inbox): answers the requests, and those offered to the
# inbox meanwhile that fit, through each request's callbacks; closes the inbox, leaving
# in it what never joined. Returns False, having done nothing, where the model cannot.
GenerateContinuously = Callable[[Sequence[AnswerRequest], JoinInbox], bool]


class GenerationSessions:
    def __init__(
        self,
        generate_continuously: GenerateContinuously,
        *,
        queue: asyncio.Queue[Job],
        backlog: deque[Job],
        depth: Callable[[], int],
        thread: ModelThread,
        observer: QueueObserver,
        shortage: MemoryShortage,
    ) -> None:
        self._generate_continuously = generate_continuously
        self._queue = queue
        self._backlog = backlog
        self._depth = depth
        self._thread = thread
        self._observer = observer
        self._shortage = shortage
        self._joining: JoinInbox | None = None  # the running session's, while it runs

    @property
    def joining(self) -> int:
        """Jobs offered to the running session that it has not taken in yet."""
        return len(self._joining) if self._joining is not None else 0

    async def run(self, live: list[GenerateJob], taken: list[Job]) -> bool:
        """`live` decoded continuously, with the generation jobs that arrive meanwhile
        (each joiner is added to `taken`, the jobs the queue fails if it stops).

        False where the model cannot (nothing ran). Jobs that never joined go back to the
        head of the backlog: they were queued before anything set aside while they waited.
        """
        loop = asyncio.get_running_loop()
        inbox = JoinInbox()
        joiners: dict[int, GenerateJob] = {}  # by id() of the request offered for each
        feeder = loop.create_task(self._feed(inbox, joiners, taken), name="joiners")
        self._joining = inbox
        started = time.perf_counter()
        try:
            decoded = await self._thread.call(
                self._generate_continuously, [answer_request(job, loop) for job in live], inbox
            )
        except Exception as exc:
            failure: Exception | None = exc
            decoded = True
        else:
            failure = None
        finally:
            inbox.close()
            self._joining = None
            feeder.cancel()
            await asyncio.wait([feeder])  # not `await feeder`: our own cancel must propagate
        left = [joiners.pop(id(request)) for request in inbox.waiting()]
        self._backlog.extendleft(reversed(left))
        self._observer.queue_depth(self._depth())
        if failure is not None:  # a row without its answer would wait forever: fail them
            failed = [*live, *joiners.values()]
            if is_out_of_memory(failure):
                await self._shortage.after("generate", len(failed))
                failure = DeviceMemoryError(OUT_OF_MEMORY_ANSWERING)
            fail_jobs(failed, failure)
        elif decoded:
            self._observer.generation_done(len(live) + len(joiners), time.perf_counter() - started)
        return bool(decoded)

    async def _feed(
        self, inbox: JoinInbox, joiners: dict[int, GenerateJob], taken: list[Job]
    ) -> None:
        """Offers the session the generations waiting (set aside, then as they arrive), in
        queue order, until another kind of job waits (it must not be overtaken) or the
        session closes its inbox."""
        loop = asyncio.get_running_loop()
        while self._backlog and isinstance(self._backlog[0], GenerateJob):
            if not self._offer(self._backlog[0], inbox, joiners, taken, loop):
                return
            self._backlog.popleft()
        while not self._backlog:
            job = await self._queue.get()
            if not (isinstance(job, GenerateJob) and self._offer(job, inbox, joiners, taken, loop)):
                self._backlog.append(job)
                self._observer.queue_depth(self._depth())
                return

    def _offer(
        self,
        job: GenerateJob,
        inbox: JoinInbox,
        joiners: dict[int, GenerateJob],
        taken: list[Job],
        loop: asyncio.AbstractEventLoop,
    ) -> bool:
        """Hands `job` to the session, or drops it (answered, abandoned); False once the
        session has closed its inbox."""
        if job.future.done():
            return True
        if job.abandoned:
            job.future.cancel()  # its client left before it ran
            return True
        request = answer_request(job, loop)
        if not inbox.offer(request):
            return False
        joiners[id(request)] = job
        taken.append(job)  # the queue's stop() fails it if it cancels us
        self._observer.queue_depth(self._depth())
        return True
