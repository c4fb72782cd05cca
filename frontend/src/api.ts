// A small typed client for the annotator API (labeling/api). Session auth + CSRF header.
import type { FinishReason, Rating } from "./session";

export interface QueueTask {
  id: number;
  screening: boolean; // quality-control questions look like any other task
  mode: string;
  problem: string;
  ground_truth_answer: string;
  steps: string[];
  lease_expires_at: string;
  resumed: boolean;
}

export interface SubmitPayload {
  idempotency_key: string;
  ratings: Rating[];
  flags: boolean[];
  human_completion: string | null;
  finish_reason: FinishReason;
  finish_note: string;
  total_time_ms: number;
  started_at: string;
}

export interface SubmitResult {
  label_id: number;
  task_id: number;
  finish_reason: FinishReason;
  created: boolean;
  /** Kept beyond the task's overlap: the hold had been taken back and others held the slots. */
  late: boolean;
}

export interface Me {
  username: string;
  labels_today: number;
  labels_total: number;
  gold_agreement: number | null;
  screening: "passed" | "pending" | "failed" | "none";
}

/**
 * `network` (no response) and 5xx are worth retrying; anything else is the server's answer.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number, // 0 for a network failure
    readonly body: unknown,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }

  /** The server's reason as a word the page acts on (`already_labeled`, …), or "". */
  get code(): string {
    const body = this.body as Record<string, unknown> | null;
    return body && typeof body === "object" && typeof body.code === "string" ? body.code : "";
  }

  get retryable(): boolean {
    // task_changed: the task changed under the submit twice; sending it again is the fix.
    return this.status === 0 || this.status >= 500 || this.status === 429 || this.code === "task_changed";
  }

  /** A one-line description for the page: DRF's `detail`, or `field: message` pairs. */
  describe(): string {
    if (this.status === 0) {
      return "Cannot reach the server.";
    }
    const body = this.body;
    if (body && typeof body === "object") {
      const b = body as Record<string, unknown>;
      if (typeof b.detail === "string") {
        return b.detail;
      }
      const parts = Object.entries(b).map(([field, msgs]) => {
        const text = Array.isArray(msgs) ? msgs.join(" ") : String(msgs);
        return field === "non_field_errors" ? text : `${field}: ${text}`;
      });
      if (parts.length) {
        return parts.join("; ");
      }
    }
    return `${this.message}`;
  }
}

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export class ApiClient {
  constructor(
    private readonly csrfToken: () => string,
    private readonly fetchImpl: FetchLike = (input, init) => fetch(input, init),
    private readonly base = "/api",
  ) {}

  private async request<T>(method: string, path: string, body?: unknown): Promise<{ status: number; data: T | null }> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
    }
    if (method !== "GET") {
      headers["X-CSRFToken"] = this.csrfToken();
    }
    let res: Response;
    try {
      res = await this.fetchImpl(`${this.base}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch (err) {
      throw new ApiError(0, null, `network error on ${method} ${path}: ${String(err)}`);
    }
    const text = res.status === 204 ? "" : await res.text().catch(() => "");
    let data: unknown = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null; // an HTML error page from a proxy, say
      }
    }
    if (!res.ok) {
      throw new ApiError(res.status, data, `${method} ${path} failed with HTTP ${res.status}`);
    }
    return { status: res.status, data: data as T | null };
  }

  /** The next task, or null when the queue is empty. */
  async next(exclude: number[] = []): Promise<QueueTask | null> {
    const { status, data } = await this.request<QueueTask>("POST", "/queue/next/", { exclude });
    return status === 204 ? null : data;
  }

  async heartbeat(taskId: number): Promise<string> {
    const { data } = await this.request<{ lease_expires_at: string }>("POST", `/tasks/${taskId}/heartbeat/`);
    return data?.lease_expires_at ?? "";
  }

  async submit(taskId: number, payload: SubmitPayload): Promise<SubmitResult> {
    const { data } = await this.request<SubmitResult>("POST", `/tasks/${taskId}/submit/`, payload);
    if (!data) {
      throw new ApiError(500, null, "submit returned no body");
    }
    return data;
  }

  async skip(taskId: number): Promise<void> {
    await this.request("POST", `/tasks/${taskId}/skip/`);
  }

  async me(): Promise<Me> {
    const { data } = await this.request<Me>("GET", "/me/");
    if (!data) {
      throw new ApiError(500, null, "/me/ returned no body");
    }
    return data;
  }
}
