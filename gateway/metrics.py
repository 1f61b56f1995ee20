"""Every Prometheus metric memgate exports, on a registry the app is given (never the global one).

Label values are bounded sets (routes, status codes, reasons, outcomes): never a user, tenant or key.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.multiprocess import MultiProcessCollector

# Sub-millisecond resolution matters: the gateway's own overhead is budgeted in single milliseconds.
FAST_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
SLOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
COUNT_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64)
TOKEN_BUCKETS = (0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)

# Every value a bounded label can take. The counters start at zero for each, so dashboards and
# alerts (`rate()`, `sum by`) see a series from the first scrape, not only after the first failure.
# Code that increments these counters should use these names; new values belong here first.
UPSTREAM_ERROR_REASONS = ("timeout", "unreachable", "stream_timeout", "stream_unreachable")
MEMORY_STATUSES = ("ok", "off", "timeout", "degraded")  # X-Memory-Status
RULES_RELOAD_OUTCOMES = ("ok", "invalid")
# empty: a user the store holds nothing for, answered without a read; reload: a hit refreshed in the background
HOT_TIER_RESULTS = ("hit", "miss", "empty", "reload")
EXTRACTION_OUTCOMES = ("enqueued", "done", "retry", "dead", "dropped")  # dropped: queue full at enqueue
MEMORY_WRITE_ACTIONS = ("add", "refresh", "supersede", "update", "delete", "expire", "evict", "confirm")  # history actions; confirm: a critical change asked about or answered
CAPTURE_SKIPPED_REASONS = ("failed", "unreadable", "truncated", "nothing_to_extract", "queue_error", "capture_error")
HYGIENE_REASONS = ("ttl", "unused", "cap")
KEYLESS_REASONS = ("no_key", "placeholder_key")  # identity.NO_KEY, identity.PLACEHOLDER_KEY
# The llm extractor's answers that failed or needed repair (gateway/extraction/llm.py).
LLM_PROBLEM_REASONS = ("refused", "ignored", "invalid", "unparseable", "repaired", "truncated", "http_error", "unreachable", "no_calls_left", "timeout")
APIS = ("chat", "responses", "messages")  # the `api` label: chat completions, OpenAI Responses, Anthropic Messages
# trimmed: made to fit; unfittable: system + latest turn alone overflow, sent as is; over: overflow "off", sent as is
OVERFLOW_OUTCOMES = ("trimmed", "unfittable", "over")
MEMORY_TIERS = ("core", "recall", "archival")  # gateway.memory.records.TIERS


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, multiprocess_dir: str | None = None) -> None:
        """With `multiprocess_dir` (a worker of `serve --workers N`; PROMETHEUS_MULTIPROC_DIR names it),
        values live in files there and `render` sums every worker's."""
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir:
            prometheus_values.ValueClass = prometheus_values.MultiProcessValue()  # before any metric below is made
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_open_fds: both ran out under load once
        self.requests = Counter("memgate_requests", "Requests answered, by route and status code", ["route", "status"], registry=r)
        self.request_duration = Histogram(
            "memgate_request_duration_seconds", "End-to-end request time seen by the gateway", ["route"], buckets=SLOW_BUCKETS, registry=r
        )
        self.upstream_duration = Histogram(
            "memgate_upstream_duration_seconds", "Time from sending upstream to the last upstream byte", ["route"], buckets=SLOW_BUCKETS, registry=r
        )
        self.overhead = Histogram(
            "memgate_overhead_seconds", "Time the gateway itself adds (request time minus upstream time)", ["route"], buckets=FAST_BUCKETS, registry=r
        )
        self.stream_first_byte = Histogram(
            "memgate_stream_first_byte_seconds", "Time from request arrival to the first streamed byte", buckets=SLOW_BUCKETS, registry=r
        )
        self.upstream_errors = Counter("memgate_upstream_errors", "Upstream failures, by reason", ["reason"], registry=r)
        self.in_flight = Gauge("memgate_requests_in_flight", "Requests being served now", registry=r, multiprocess_mode="livesum")
        self.memory_status = Counter("memgate_memory_status", "Requests of the memory APIs by X-Memory-Status and API (chat, responses, messages)", ["status", "api"], registry=r)
        self.keyless_memory_off = Counter(
            "memgate_keyless_memory_off", "Memory API requests served with memory off for want of a caller key, by reason and API", ["reason", "api"], registry=r
        )
        self.rules_reloads = Counter("memgate_rules_reloads", "Rules reloads, by outcome", ["outcome"], registry=r)
        # Recall and injection.
        self.recall_duration = Histogram("memgate_recall_duration_seconds", "Recall time per request", ["api"], buckets=FAST_BUCKETS, registry=r)
        self.recall_timeouts = Counter("memgate_recall_timeouts", "Recalls that exceeded recall_timeout_ms", ["api"], registry=r)
        self.memories_injected = Histogram("memgate_memories_injected", "Memories injected per request", ["api"], buckets=COUNT_BUCKETS, registry=r)
        self.injected_tokens = Histogram("memgate_injected_tokens", "Tokens of memory injected per request", ["api"], buckets=TOKEN_BUCKETS, registry=r)
        self.hot_tier = Counter("memgate_hot_tier_lookups", "Hot tier lookups, by result", ["result"], registry=r)
        self.flagged_memories = Counter("memgate_memories_flagged", "Memories flagged as instruction-like", registry=r)
        # Extraction.
        self.extraction_jobs = Counter("memgate_extraction_jobs", "Extraction jobs, by outcome", ["outcome"], registry=r)
        self.queue_depth = Gauge("memgate_extraction_queue_depth", "Extraction jobs waiting or running", registry=r, multiprocess_mode="livesum")
        self.queue_oldest_age = Gauge("memgate_extraction_queue_oldest_age_seconds", "Age of the oldest pending job", registry=r, multiprocess_mode="livemax")
        self.dead_letters = Gauge("memgate_extraction_dead_letters", "Jobs that failed every retry", registry=r, multiprocess_mode="livesum")
        self.dead_letters_purged = Counter(
            "memgate_extraction_dead_letters_purged", "Dead letters deleted past --dead-letter-retention or past --queue-max of them", registry=r
        )
        self.job_messages_cut = Counter(
            "memgate_extraction_job_messages_cut", "Older messages of long exchanges left out of their job (--max-job-messages, --max-job-bytes)", registry=r
        )
        self.extraction_duration = Histogram(
            "memgate_extraction_duration_seconds", "Time to extract and reconcile one batch", buckets=SLOW_BUCKETS, registry=r
        )
        self.memories_written = Counter("memgate_memories_written", "Memory writes, by action", ["action"], registry=r)
        self.captures_skipped = Counter("memgate_capture_skipped", "Exchanges not extracted from, by reason", ["reason", "api"], registry=r)
        self.hygiene_removed = Counter("memgate_hygiene_removed", "Memories removed by hygiene, by reason", ["reason"], registry=r)
        self.llm_extraction_problems = Counter(
            "memgate_extraction_llm_problems", "llm extractor answers (session summaries too) that failed or needed repair, by reason", ["reason"], registry=r
        )
        self.prefetch_users = Gauge("memgate_prefetch_users", "Users loaded into the hot tier by the start-up prefetch", registry=r, multiprocess_mode="livesum")
        self.prefetch_seconds = Gauge("memgate_prefetch_seconds", "Time the start-up prefetch took", registry=r, multiprocess_mode="livemax")
        self.memories_stored = Counter("memgate_memories_stored", "Memories added to the store, by tier (core, recall, archival)", ["tier"], registry=r)

        # Context windows and overflow.
        self.unknown_model = Counter(
            "memgate_context_window_unknown_model", "Chat requests whose model the context-window table does not know (the default window was used)", registry=r
        )
        self.overflow = Counter("memgate_overflow", "Requests (chat, Responses, Messages) longer than their context window, by outcome", ["outcome"], registry=r)
        self.overflow_dropped_messages = Counter("memgate_overflow_dropped_messages", "Messages (Responses items, Messages turns) left out of trimmed requests", registry=r)
        for counter, values in (
            (self.upstream_errors, UPSTREAM_ERROR_REASONS),
            (self.rules_reloads, RULES_RELOAD_OUTCOMES),
            (self.hot_tier, HOT_TIER_RESULTS),
            (self.extraction_jobs, EXTRACTION_OUTCOMES),
            (self.memories_written, MEMORY_WRITE_ACTIONS),
            (self.hygiene_removed, HYGIENE_REASONS),
            (self.llm_extraction_problems, LLM_PROBLEM_REASONS),
            (self.overflow, OVERFLOW_OUTCOMES),
            (self.memories_stored, MEMORY_TIERS),
        ):
            for value in values:
                counter.labels(value)
        for api in APIS:
            for counter, values in ((self.memory_status, MEMORY_STATUSES), (self.keyless_memory_off, KEYLESS_REASONS), (self.captures_skipped, CAPTURE_SKIPPED_REASONS)):
                for value in values:
                    counter.labels(value, api)
            self.recall_timeouts.labels(api)

    def render(self) -> bytes:
        if not self.multiprocess_dir:
            return generate_latest(self.registry)
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker, path=self.multiprocess_dir)
        ProcessCollector(registry=every_worker)  # process_* of the worker that answered the scrape
        return generate_latest(every_worker)
