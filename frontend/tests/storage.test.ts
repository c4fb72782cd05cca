import { describe, expect, it } from "vitest";
import { ApiError, type SubmitPayload, type SubmitResult } from "../src/api";
import { backoffDelay, DraftStore, MemoryStore, Outbox, type Draft } from "../src/storage";
import { sessionStart } from "../src/session";

const payload = (key: string): SubmitPayload => ({
  idempotency_key: key,
  ratings: [1, -1],
  flags: [false, false],
  human_completion: null,
  finish_reason: "found_error",
  finish_note: "",
  total_time_ms: 1234,
  started_at: "2026-01-01T00:00:00Z",
});

/** A server stand-in that answers from a script, recording every call it gets. */
function scriptedServer(answers: ((taskId: number, p: SubmitPayload) => SubmitResult)[]) {
  const calls: { taskId: number; key: string }[] = [];
  return {
    calls,
    submit: async (taskId: number, p: SubmitPayload): Promise<SubmitResult> => {
      calls.push({ taskId, key: p.idempotency_key });
      const answer = answers.shift();
      if (!answer) {
        throw new Error("unexpected call");
      }
      return answer(taskId, p);
    },
  };
}

const ok = (created = true) => (taskId: number): SubmitResult => ({ label_id: 1, task_id: taskId, finish_reason: "found_error", created, late: false });
const fail = (status: number, body: unknown = null) => (): never => {
  throw new ApiError(status, body, `HTTP ${status}`);
};

describe("Outbox", () => {
  it("persists an entry before sending and removes it once saved", async () => {
    const store = new MemoryStore();
    const outbox = new Outbox(store, "ann");
    outbox.add(12, payload("k1"), 0);
    // Survives a "reload": a new Outbox over the same storage sees it.
    expect(new Outbox(store, "ann").taskIds()).toEqual([12]);
    const server = scriptedServer([ok()]);
    const out = await outbox.flush(server, () => 0);
    expect(out).toEqual([{ kind: "saved", taskId: 12, result: ok()(12) }]);
    expect(outbox.entries()).toEqual([]);
  });

  it("retries network errors and 5xx with the same idempotency key and growing backoff", async () => {
    let now = 0;
    const outbox = new Outbox(new MemoryStore(), "ann", { baseMs: 1000, maxMs: 8000, jitter: 0 }, () => 0.5);
    outbox.add(12, payload("same-key"), now);
    const server = scriptedServer([fail(0), fail(502), ok(false)]);

    let out = await outbox.flush(server, () => now);
    expect(out[0]).toMatchObject({ kind: "retrying", attempts: 1, retryAt: 1000 });
    expect(await outbox.flush(server, () => 999)).toEqual([]); // not due yet: no request
    now = 1000;
    out = await outbox.flush(server, () => now);
    expect(out[0]).toMatchObject({ kind: "retrying", attempts: 2, retryAt: 3000 });
    expect(outbox.entries()[0]).toMatchObject({ attempts: 2, lastError: "HTTP 502" });
    now = 3000;
    out = await outbox.flush(server, () => now);
    expect(out[0]).toMatchObject({ kind: "saved", result: { created: false } });
    expect(server.calls.map((c) => c.key)).toEqual(["same-key", "same-key", "same-key"]);
    expect(outbox.entries()).toEqual([]);
  });

  it("force sends an entry before its retry time (the browser came back online)", async () => {
    const outbox = new Outbox(new MemoryStore(), "ann", { baseMs: 1000, maxMs: 8000, jitter: 0 });
    outbox.add(3, payload("k"), 0);
    await outbox.flush(scriptedServer([fail(503)]), () => 0);
    const out = await outbox.flush(scriptedServer([ok()]), () => 10, true);
    expect(out[0]?.kind).toBe("saved");
  });

  it("drops an entry the server rejects for good and says why", async () => {
    const outbox = new Outbox(new MemoryStore(), "ann");
    outbox.add(4, payload("a"), 0);
    outbox.add(5, payload("b"), 0);
    const server = scriptedServer([
      fail(409, { detail: "task 4 already has all its labels" }),
      fail(400, { ratings: ["step 1 is Bad"] }),
    ]);
    const out = await outbox.flush(server, () => 0);
    expect(out).toEqual([
      { kind: "rejected", taskId: 4, status: 409, error: "task 4 already has all its labels" },
      { kind: "rejected", taskId: 5, status: 400, error: "ratings: step 1 is Bad" },
    ]);
    expect(outbox.entries()).toEqual([]);
  });

  it("keeps other entries when one fails, and sends each entry once per flush", async () => {
    const outbox = new Outbox(new MemoryStore(), "ann", { baseMs: 1000, maxMs: 8000, jitter: 0 });
    outbox.add(1, payload("a"), 0);
    outbox.add(2, payload("b"), 0);
    const server = scriptedServer([fail(0), ok()]);
    await outbox.flush(server, () => 0);
    expect(outbox.taskIds()).toEqual([1]);
    expect(server.calls).toEqual([
      { taskId: 1, key: "a" },
      { taskId: 2, key: "b" },
    ]);
  });

  it("shares one run between concurrent flushes so a label is not sent twice at once", async () => {
    const outbox = new Outbox(new MemoryStore(), "ann");
    outbox.add(1, payload("a"), 0);
    const server = scriptedServer([ok()]);
    const [a, b] = await Promise.all([outbox.flush(server, () => 0), outbox.flush(server, () => 0)]);
    expect(a).toBe(b);
    expect(server.calls).toHaveLength(1);
  });

  it("keeps separate outboxes per user", () => {
    const store = new MemoryStore();
    new Outbox(store, "ann").add(1, payload("a"), 0);
    expect(new Outbox(store, "bob").entries()).toEqual([]);
  });

  it("re-adding a task replaces its entry instead of duplicating it", () => {
    const outbox = new Outbox(new MemoryStore(), "ann");
    outbox.add(1, payload("a"), 0);
    outbox.add(1, payload("a"), 5);
    expect(outbox.entries()).toHaveLength(1);
  });
});

describe("backoffDelay", () => {
  it("doubles from the base up to the cap, with bounded jitter", () => {
    const policy = { baseMs: 1000, maxMs: 10_000, jitter: 0.2 };
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, policy, () => 0.5))).toEqual([1000, 2000, 4000, 8000, 10_000, 10_000]);
    expect(backoffDelay(1, policy, () => 0)).toBe(800);
    expect(backoffDelay(1, policy, () => 1)).toBe(1200);
  });
});

describe("DraftStore", () => {
  const task = (id: number) => ({
    id,
    screening: false,
    mode: "phase2",
    problem: "p",
    ground_truth_answer: "4",
    steps: ["a", "b"],
    lease_expires_at: "2026-01-01T00:30:00Z",
    resumed: false,
  });
  const draft = (id: number, savedAt: number): Draft => ({
    task: task(id),
    session: sessionStart(id, 2),
    elapsedMs: 500,
    startedAt: "2026-01-01T00:00:00Z",
    idempotencyKey: `key-${id}`,
    savedAt,
  });

  it("saves, loads and removes a draft by task id, and remembers the current task", () => {
    const store = new MemoryStore();
    const drafts = new DraftStore(store, "ann");
    drafts.save(draft(9, 0));
    drafts.currentTaskId = 9;
    const again = new DraftStore(store, "ann");
    expect(again.load(9)?.idempotencyKey).toBe("key-9");
    expect(again.currentTaskId).toBe(9);
    expect(again.load(10)).toBeNull();
    again.remove(9);
    expect(again.load(9)).toBeNull();
  });

  it("never brings back the draft of a submitted task, even when another tab saves it again", () => {
    const store = new MemoryStore();
    const here = new DraftStore(store, "ann");
    const otherTab = new DraftStore(store, "ann");
    here.save(draft(9, 0));
    here.save(draft(10, 0));
    here.markSubmitted(9);
    expect(here.load(9)).toBeNull();
    otherTab.save(draft(9, 1)); // its timer still holds the task on screen
    expect(store.getItem("stepwise:ann:draft:9")).toBeNull();
    expect(otherTab.load(9)).toBeNull();
    expect(otherTab.isSubmitted(9)).toBe(true);
    expect(otherTab.load(10)?.idempotencyKey).toBe("key-10"); // others untouched
  });

  it("remembers a bounded number of submitted tasks", () => {
    const store = new MemoryStore();
    const drafts = new DraftStore(store, "ann");
    for (let id = 1; id <= 250; id++) {
      drafts.markSubmitted(id);
    }
    expect(drafts.submittedIds()).toHaveLength(200);
    expect(drafts.isSubmitted(250)).toBe(true);
    expect(drafts.isSubmitted(1)).toBe(false);
  });

  it("ignores corrupt entries", () => {
    const store = new MemoryStore();
    store.setItem("stepwise:ann:draft:3", "{not json");
    expect(new DraftStore(store, "ann").load(3)).toBeNull();
  });

  it("prunes old drafts but keeps recent ones and those still in the outbox", () => {
    const store = new MemoryStore();
    const drafts = new DraftStore(store, "ann");
    const day = 24 * 3600 * 1000;
    drafts.save(draft(1, 0));
    drafts.save(draft(2, 0));
    drafts.save(draft(3, 20 * day));
    drafts.prune(21 * day, new Set([2]));
    expect([1, 2, 3].map((id) => drafts.load(id) !== null)).toEqual([false, true, true]);
  });
});
