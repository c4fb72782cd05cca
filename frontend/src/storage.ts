// Work is never lost: the in-progress label (a draft per task) and every label not yet
// acknowledged by the server (the outbox) live in localStorage, keyed by user, so a reload,
// a crash or a dropped connection picks up where it left off.
import { ApiError, type ApiClient, type QueueTask, type SubmitPayload, type SubmitResult } from "./api";
import type { SessionState } from "./session";

/** The part of the Web Storage API we use, so tests can pass an in-memory map. */
export interface KeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
  readonly length: number;
  key(index: number): string | null;
}

export class MemoryStore implements KeyValueStore {
  private readonly map = new Map<string, string>();
  getItem(key: string): string | null {
    return this.map.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.map.set(key, value);
  }
  removeItem(key: string): void {
    this.map.delete(key);
  }
  get length(): number {
    return this.map.size;
  }
  key(index: number): string | null {
    return [...this.map.keys()][index] ?? null;
  }
}

function readJson(store: KeyValueStore, key: string): unknown {
  const raw = store.getItem(key);
  if (raw === null) {
    return null;
  }
  try {
    return JSON.parse(raw);
  } catch {
    return null;
  }
}

export interface Draft {
  task: QueueTask;
  session: SessionState;
  elapsedMs: number;
  startedAt: string;
  /** Fixed when the draft is made, so every retry of this label is the same submit. */
  idempotencyKey: string;
  savedAt: number;
}

const DRAFT_MAX_AGE_MS = 14 * 24 * 3600 * 1000;
/** How many submitted task ids are remembered (far more than tabs open at once). */
const SUBMITTED_KEPT = 200;

export class DraftStore {
  private readonly prefix: string;

  constructor(
    private readonly store: KeyValueStore,
    user: string,
  ) {
    this.prefix = `stepwise:${user}:`;
  }

  private key(taskId: number): string {
    return `${this.prefix}draft:${taskId}`;
  }

  /** Where the ids of tasks already submitted live (other tabs watch it: a storage event). */
  get submittedKey(): string {
    return `${this.prefix}submitted`;
  }

  /** Tasks whose label the server has: their drafts are never saved or loaded again. */
  submittedIds(): number[] {
    const v = readJson(this.store, this.submittedKey);
    return Array.isArray(v) ? v.filter((id): id is number => Number.isInteger(id)) : [];
  }

  isSubmitted(taskId: number): boolean {
    return this.submittedIds().includes(taskId);
  }

  /**
   * Drops the task's draft for good: another tab still showing the task would otherwise save
   * it again and bring back work that is already done.
   */
  markSubmitted(taskId: number): void {
    const ids = [...this.submittedIds().filter((id) => id !== taskId), taskId].slice(-SUBMITTED_KEPT);
    this.store.setItem(this.submittedKey, JSON.stringify(ids));
    this.remove(taskId);
  }

  save(draft: Draft): void {
    if (this.isSubmitted(draft.task.id)) {
      return;
    }
    this.store.setItem(this.key(draft.task.id), JSON.stringify(draft));
  }

  load(taskId: number): Draft | null {
    if (this.isSubmitted(taskId)) {
      return null;
    }
    const d = readJson(this.store, this.key(taskId)) as Draft | null;
    if (!d || typeof d !== "object" || !d.task || d.task.id !== taskId || typeof d.idempotencyKey !== "string") {
      return null;
    }
    return d;
  }

  remove(taskId: number): void {
    this.store.removeItem(this.key(taskId));
  }

  /** The task that was on screen when the page was last open. */
  get currentTaskId(): number | null {
    const v = readJson(this.store, `${this.prefix}current`);
    return typeof v === "number" ? v : null;
  }

  set currentTaskId(taskId: number | null) {
    if (taskId === null) {
      this.store.removeItem(`${this.prefix}current`);
    } else {
      this.store.setItem(`${this.prefix}current`, JSON.stringify(taskId));
    }
  }

  /** Drops drafts nobody came back to (their leases are long gone). */
  prune(now: number, keep: Set<number>): void {
    const stale: string[] = [];
    for (let i = 0; i < this.store.length; i++) {
      const k = this.store.key(i);
      if (!k?.startsWith(`${this.prefix}draft:`)) {
        continue;
      }
      const d = readJson(this.store, k) as Partial<Draft> | null;
      const id = Number(k.slice(`${this.prefix}draft:`.length));
      if (!keep.has(id) && (!d || typeof d.savedAt !== "number" || now - d.savedAt > DRAFT_MAX_AGE_MS)) {
        stale.push(k);
      }
    }
    stale.forEach((k) => this.store.removeItem(k));
  }
}

export interface OutboxEntry {
  taskId: number;
  payload: SubmitPayload;
  attempts: number;
  nextAttemptAt: number;
  lastError: string;
}

export type FlushOutcome =
  | { kind: "saved"; taskId: number; result: SubmitResult }
  | { kind: "retrying"; taskId: number; attempts: number; retryAt: number; error: string }
  | { kind: "rejected"; taskId: number; status: number; error: string };

export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  /** 0..1; the share of the delay that is randomised so many clients don't retry in step. */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 1000, maxMs: 60_000, jitter: 0.2 };

export function backoffDelay(attempts: number, policy: BackoffPolicy, random: () => number): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempts - 1));
  return Math.round(exp * (1 - policy.jitter + 2 * policy.jitter * random()));
}

/**
 * Labels waiting for the server. Entries are persisted before the first attempt and removed
 * only when the server answers for good, so a reload in the middle of a retry loses nothing.
 */
export class Outbox {
  private readonly key: string;
  private flushing: Promise<FlushOutcome[]> | null = null;

  constructor(
    private readonly store: KeyValueStore,
    user: string,
    private readonly policy: BackoffPolicy = DEFAULT_BACKOFF,
    private readonly random: () => number = Math.random,
  ) {
    this.key = `stepwise:${user}:outbox`;
  }

  entries(): OutboxEntry[] {
    const v = readJson(this.store, this.key);
    return Array.isArray(v) ? (v as OutboxEntry[]) : [];
  }

  private write(entries: OutboxEntry[]): void {
    if (entries.length) {
      this.store.setItem(this.key, JSON.stringify(entries));
    } else {
      this.store.removeItem(this.key);
    }
  }

  /** Queues a label; a second add for the same task replaces the first (same key kept). */
  add(taskId: number, payload: SubmitPayload, now: number): void {
    const rest = this.entries().filter((e) => e.taskId !== taskId);
    this.write([...rest, { taskId, payload, attempts: 0, nextAttemptAt: now, lastError: "" }]);
  }

  taskIds(): number[] {
    return this.entries().map((e) => e.taskId);
  }

  /** When the next retry is due, or null when nothing is waiting. */
  nextDue(): number | null {
    const times = this.entries().map((e) => e.nextAttemptAt);
    return times.length ? Math.min(...times) : null;
  }

  /**
   * Sends every entry that is due, oldest first. Concurrent calls share one run, so a label
   * is never sent twice at once (the idempotency key would make that harmless, but noisy).
   */
  flush(api: Pick<ApiClient, "submit">, now: () => number, force = false): Promise<FlushOutcome[]> {
    if (!this.flushing) {
      this.flushing = this.flushOnce(api, now, force).finally(() => {
        this.flushing = null;
      });
    }
    return this.flushing;
  }

  private async flushOnce(api: Pick<ApiClient, "submit">, now: () => number, force: boolean): Promise<FlushOutcome[]> {
    const outcomes: FlushOutcome[] = [];
    for (const entry of this.entries()) {
      if (!force && entry.nextAttemptAt > now()) {
        continue;
      }
      let outcome: FlushOutcome;
      try {
        const result = await api.submit(entry.taskId, entry.payload);
        outcome = { kind: "saved", taskId: entry.taskId, result };
      } catch (err) {
        const apiErr = err instanceof ApiError ? err : new ApiError(0, null, String(err));
        if (apiErr.retryable) {
          const attempts = entry.attempts + 1;
          const retryAt = now() + backoffDelay(attempts, this.policy, this.random);
          outcome = { kind: "retrying", taskId: entry.taskId, attempts, retryAt, error: apiErr.describe() };
        } else {
          outcome = { kind: "rejected", taskId: entry.taskId, status: apiErr.status, error: apiErr.describe() };
        }
      }
      // Re-read: another tab (or add()) may have changed the outbox while we awaited.
      const current = this.entries();
      if (outcome.kind === "retrying") {
        const o = outcome;
        this.write(
          current.map((e) =>
            e.taskId === entry.taskId && e.payload.idempotency_key === entry.payload.idempotency_key
              ? { ...e, attempts: o.attempts, nextAttemptAt: o.retryAt, lastError: o.error }
              : e,
          ),
        );
      } else {
        this.write(
          current.filter(
            (e) => !(e.taskId === entry.taskId && e.payload.idempotency_key === entry.payload.idempotency_key),
          ),
        );
      }
      outcomes.push(outcome);
    }
    return outcomes;
  }
}
