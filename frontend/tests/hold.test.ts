import { describe, expect, it } from "vitest";
import { ApiError } from "../src/api";
import { holdLost } from "../src/hold";

const refused = (status: number, body: unknown) => new ApiError(status, body, `HTTP ${status}`);

describe("what the page does when its hold on a task is gone", () => {
  it("puts away a task already submitted (another tab) instead of offering to redo it", () => {
    const lost = holdLost(refused(409, { detail: "you have already labeled task 7", code: "already_labeled" }), 7);
    expect(lost?.action).toBe("drop");
    expect(lost?.text).toContain("You already submitted task 7");
  });

  it("keeps the draft and says the work is kept when another annotator holds the task", () => {
    const lost = holdLost(
      refused(409, { detail: "…", code: "held_by_another", kept_until: "2026-12-05T10:30:00+00:00" }),
      7,
    );
    expect(lost).toMatchObject({ action: "keep", level: "warn" });
    expect(lost?.text).toContain("another annotator has it now");
    expect(lost?.text).toContain("saved as an extra label (if you submit before");
  });

  it("says the work is saved when the task still has a free slot", () => {
    const lost = holdLost(refused(409, { code: "taken_back" }), 7);
    expect(lost).toMatchObject({ action: "keep", level: "info" });
    expect(lost?.text).toContain("your work is saved");
    expect(lost?.text).not.toContain("before"); // no deadline given, none invented
  });

  it("never tells the annotator to finish work that would be refused", () => {
    for (const body of [{ code: "not_leased" }, { detail: "task 7 is not leased to you" }]) {
      const lost = holdLost(refused(404, body), 7);
      expect(lost?.action).toBe("lost");
      expect(lost?.text).toContain("would not be saved");
      expect(lost?.text).not.toMatch(/finish it anyway/i);
    }
  });

  it("leaves other failures (the network, a 503) to the next heartbeat", () => {
    expect(holdLost(refused(0, null), 7)).toBeNull();
    expect(holdLost(refused(503, { detail: "busy" }), 7)).toBeNull();
    expect(holdLost(new Error("boom"), 7)).toBeNull();
  });
});

describe("a submit refused because the task changed while saving", () => {
  it("is sent again, not shown as refused", () => {
    expect(refused(409, { code: "task_changed" }).retryable).toBe(true);
    expect(refused(409, { code: "already_labeled" }).retryable).toBe(false);
  });
});
