import { describe, expect, it } from "vitest";
import { ApiClient, ApiError } from "../src/api";
import { commandForKey, isTypingTarget } from "../src/keys";

const key = (k: string, mods: Partial<{ ctrlKey: boolean; metaKey: boolean; altKey: boolean }> = {}) =>
  commandForKey({ key: k, ctrlKey: false, metaKey: false, altKey: false, ...mods });

describe("commandForKey", () => {
  it("maps 1/2/3, -/0/+ and = to Bad/Okay/Great", () => {
    expect(["1", "-", "2", "0", "3", "+", "="].map((k) => key(k))).toEqual([
      { type: "rate", rating: -1 },
      { type: "rate", rating: -1 },
      { type: "rate", rating: 0 },
      { type: "rate", rating: 0 },
      { type: "rate", rating: 1 },
      { type: "rate", rating: 1 },
      { type: "rate", rating: 1 },
    ]);
  });

  it("maps the task keys", () => {
    expect(key("f")).toEqual({ type: "flag" });
    expect(key("Backspace")).toEqual({ type: "undo" });
    expect(key("g")).toEqual({ type: "giveUp" });
    expect(key("b")).toEqual({ type: "badProblem" });
    expect(key("Enter")).toEqual({ type: "submit" });
    expect(key("?")).toEqual({ type: "help" });
  });

  it("leaves browser shortcuts and unknown keys alone", () => {
    expect(key("1", { ctrlKey: true })).toBeNull();
    expect(key("r", { metaKey: true })).toBeNull();
    expect(key("f", { altKey: true })).toBeNull();
    expect(key("x")).toBeNull();
  });
});

describe("isTypingTarget", () => {
  const fake = (tagName: string, extra: Record<string, unknown> = {}) => ({ tagName, isContentEditable: false, ...extra }) as unknown as EventTarget;

  it("is true in text boxes and false on buttons and the page", () => {
    expect(isTypingTarget(fake("TEXTAREA"))).toBe(true);
    expect(isTypingTarget(fake("INPUT", { type: "text" }))).toBe(true);
    expect(isTypingTarget(fake("DIV", { isContentEditable: true }))).toBe(true);
    expect(isTypingTarget(fake("INPUT", { type: "checkbox" }))).toBe(false);
    expect(isTypingTarget(fake("BUTTON"))).toBe(false);
    expect(isTypingTarget(null)).toBe(false);
  });
});

describe("ApiClient", () => {
  type Call = { url: string; init: RequestInit };
  const respond = (status: number, body?: unknown) => {
    const calls: Call[] = [];
    const client = new ApiClient(
      () => "tok",
      async (url, init) => {
        calls.push({ url, init });
        return new Response(body === undefined ? null : JSON.stringify(body), { status });
      },
    );
    return { client, calls };
  };

  it("posts exclude to queue/next with the CSRF header and returns null on 204", async () => {
    const { client, calls } = respond(204);
    expect(await client.next([3, 4])).toBeNull();
    expect(calls[0]!.url).toBe("/api/queue/next/");
    expect(calls[0]!.init.body).toBe(JSON.stringify({ exclude: [3, 4] }));
    expect((calls[0]!.init.headers as Record<string, string>)["X-CSRFToken"]).toBe("tok");
  });

  it("turns a 400 body into a message naming the field", async () => {
    const { client } = respond(400, { finish_note: ["a reason is required for give_up"] });
    const err = await client.submit(1, {} as never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).retryable).toBe(false);
    expect((err as ApiError).describe()).toBe("finish_note: a reason is required for give_up");
  });

  it("marks network failures and 5xx as retryable", async () => {
    const down = new ApiClient(() => "", async () => {
      throw new TypeError("Failed to fetch");
    });
    const err = (await down.heartbeat(1).catch((e: unknown) => e)) as ApiError;
    expect(err.status).toBe(0);
    expect(err.retryable).toBe(true);
    const { client } = respond(503);
    expect(((await client.me().catch((e: unknown) => e)) as ApiError).retryable).toBe(true);
  });

  it("uses GET without a CSRF header for /me/", async () => {
    const { client, calls } = respond(200, { username: "a", labels_today: 1, labels_total: 2, gold_agreement: null, screening: "none" });
    expect((await client.me()).labels_total).toBe(2);
    expect(calls[0]!.init.method).toBe("GET");
    expect((calls[0]!.init.headers as Record<string, string>)["X-CSRFToken"]).toBeUndefined();
  });
});
