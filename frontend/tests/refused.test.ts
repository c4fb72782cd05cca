import { describe, expect, it } from "vitest";
import { ratingsSummary, refusalText, RefusedStore } from "../src/refused";
import { sessionStart, reduce } from "../src/session";
import { MemoryStore, type Draft } from "../src/storage";

const refusal = (taskId: number, status = 404) => ({ taskId, status, reason: `task ${taskId} is not leased to you`, refusedAt: 1 });

describe("RefusedStore", () => {
  it("keeps refusals across page loads, per user, until each is removed", () => {
    const store = new MemoryStore();
    const first = new RefusedStore(store, "ann");
    first.add(refusal(3));
    first.add(refusal(5, 409));
    first.add(refusal(3, 403)); // a later refusal of the same task replaces the first
    const reloaded = new RefusedStore(store, "ann");
    expect(reloaded.entries().map((e) => [e.taskId, e.status])).toEqual([
      [5, 409],
      [3, 403],
    ]);
    expect(new RefusedStore(store, "bob").entries()).toEqual([]);
    reloaded.remove(5);
    expect(reloaded.taskIds()).toEqual([3]);
    reloaded.remove(3);
    expect(store.length).toBe(0); // nothing left behind
  });

  it("ignores what it cannot read rather than failing the page", () => {
    const store = new MemoryStore();
    store.setItem("stepwise:ann:refused", "{not json");
    expect(new RefusedStore(store, "ann").entries()).toEqual([]);
    store.setItem("stepwise:ann:refused", JSON.stringify([{ taskId: "x" }, refusal(7)]));
    expect(new RefusedStore(store, "ann").taskIds()).toEqual([7]);
  });
});

describe("what the annotator reads", () => {
  it("explains each refusal in words, with the server's reason where it helps", () => {
    expect(refusalText(404, "task 3 is not leased to you")).toMatch(/hold on this task ran out/);
    expect(refusalText(409, "you have already labeled task 3")).toMatch(/already labeled this task/);
    expect(refusalText(403, "your labeling is paused; ask an admin")).toContain("paused; ask an admin");
    expect(refusalText(400, "ratings: step 2 is rated -1")).toContain("step 2 is rated -1");
  });

  it("summarises the kept ratings from the draft", () => {
    let session = sessionStart(3, 3);
    session = reduce(session, { type: "rate", rating: 1 });
    session = reduce(session, { type: "rate", rating: 0 });
    session = reduce(session, { type: "rate", rating: -1 });
    const draft = { session } as unknown as Draft;
    expect(ratingsSummary(draft)).toBe("Great, Okay, Bad");
    expect(ratingsSummary(null)).toBe("");
  });
});
