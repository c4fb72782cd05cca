import { describe, expect, it } from "vitest";
import {
  currentStep,
  reduce,
  sessionRestore,
  sessionStart,
  Stopwatch,
  submitFields,
  validateSubmit,
  visibleSteps,
  type Action,
  type SessionState,
} from "../src/session";

const run = (s: SessionState, ...actions: Action[]) => actions.reduce(reduce, s);
const rate = (rating: -1 | 0 | 1): Action => ({ type: "rate", rating });

describe("session state machine", () => {
  it("starts with nothing rated and the first step current", () => {
    const s = sessionStart(7, 3);
    expect(s.ratings).toEqual([]);
    expect(currentStep(s)).toBe(0);
    expect(visibleSteps(s)).toBe(1);
    expect(submitFields(s)).toBeNull();
  });

  it("refuses a task without steps", () => {
    expect(() => sessionStart(7, 0)).toThrow(/task 7 has no steps/);
  });

  it("reveals one more step per rating", () => {
    const s = run(sessionStart(1, 3), rate(1));
    expect(currentStep(s)).toBe(1);
    expect(visibleSteps(s)).toBe(2);
  });

  it("ends as found_error at the first Bad rating and ignores further ratings", () => {
    const s = run(sessionStart(1, 4), rate(1), rate(0), rate(-1), rate(1));
    expect(s.finishReason).toBe("found_error");
    expect(s.ratings).toEqual([1, 0, -1]);
    expect(currentStep(s)).toBe(2);
    expect(visibleSteps(s)).toBe(3);
  });

  it("ends as solution when the last step is rated without a Bad", () => {
    const s = run(sessionStart(1, 3), rate(1), rate(0), rate(1));
    expect(s.finishReason).toBe("solution");
    expect(submitFields(s)).toEqual({
      ratings: [1, 0, 1],
      flags: [false, false, false],
      human_completion: null,
      finish_reason: "solution",
      finish_note: "",
    });
  });

  it("flags the current step, and the flag travels with that step's rating", () => {
    const s = run(sessionStart(1, 3), rate(1), { type: "toggleFlag" }, rate(0), rate(1));
    expect(s.flags).toEqual([false, true, false]);
    expect(submitFields(s)?.flags).toEqual([false, true, false]);
  });

  it("flags the Bad step once the task has ended on it", () => {
    const s = run(sessionStart(1, 3), rate(1), rate(-1), { type: "toggleFlag" });
    expect(s.flags).toEqual([false, true, false]);
  });

  it("toggles a flag off again", () => {
    const s = run(sessionStart(1, 3), { type: "toggleFlag" }, { type: "toggleFlag" });
    expect(s.flags).toEqual([false, false, false]);
  });

  it("undo removes the last rating and reopens a finished task", () => {
    const s = run(sessionStart(1, 3), rate(1), rate(-1), { type: "setHumanCompletion", text: "fix" }, { type: "undo" });
    expect(s.ratings).toEqual([1]);
    expect(s.finishReason).toBeNull();
    expect(s.humanCompletion).toBe(""); // it belonged to the undone Bad step
    expect(currentStep(s)).toBe(1);
  });

  it("undo after a flag takes back the flag only, then the rating before it", () => {
    // Step 2 is flagged while current: Backspace removes that flag and keeps step 1's rating.
    const flagged = run(sessionStart(1, 3), rate(1), { type: "toggleFlag" });
    const once = reduce(flagged, { type: "undo" });
    expect(once.ratings).toEqual([1]);
    expect(once.flags).toEqual([false, false, false]);
    const twice = reduce(once, { type: "undo" });
    expect(twice.ratings).toEqual([]);
  });

  it("undo after rating a flagged step takes back the rating and keeps the flag", () => {
    const s = run(sessionStart(1, 3), rate(1), { type: "toggleFlag" }, rate(0), { type: "undo" });
    expect(s.ratings).toEqual([1]);
    expect(s.flags).toEqual([false, true, false]);
  });

  it("undo after flagging the Bad step that ended the task unflags it and keeps it finished", () => {
    const s = run(sessionStart(1, 3), rate(1), rate(-1), { type: "toggleFlag" }, { type: "undo" });
    expect(s.finishReason).toBe("found_error");
    expect(s.flags).toEqual([false, false, false]);
  });

  it("undo of giving up after a Bad step goes back to the error found", () => {
    const s = run(
      sessionStart(1, 3),
      rate(-1),
      { type: "finishEarly", reason: "give_up", note: "unsure" },
      { type: "undo" },
    );
    expect(s.finishReason).toBe("found_error");
    expect(s.ratings).toEqual([-1]);
  });

  it("undo with nothing rated changes nothing", () => {
    const s = sessionStart(1, 2);
    expect(reduce(s, { type: "undo" })).toBe(s);
  });

  it("give up needs a reason and keeps the ratings so far", () => {
    const s0 = run(sessionStart(1, 4), rate(1));
    expect(reduce(s0, { type: "finishEarly", reason: "give_up", note: "   " })).toBe(s0);
    const s = reduce(s0, { type: "finishEarly", reason: "give_up", note: " lost at step 2 " });
    expect(submitFields(s)).toMatchObject({ ratings: [1], finish_reason: "give_up", finish_note: "lost at step 2" });
    const undone = reduce(s, { type: "undo" });
    expect(undone.finishReason).toBeNull();
    expect(undone.ratings).toEqual([1]);
  });

  it("bad problem may follow a Bad rating (allowed as the last rating)", () => {
    const s = run(sessionStart(1, 3), rate(-1), { type: "finishEarly", reason: "bad_problem", note: "typo in problem" });
    const fields = submitFields(s)!;
    expect(fields.finish_reason).toBe("bad_problem");
    expect(validateSubmit(fields, 3)).toEqual({});
  });

  it("sends the corrected step only with found_error, trimmed, and null when blank", () => {
    let s = run(sessionStart(1, 3), rate(-1), { type: "setHumanCompletion", text: "  x = 3  " });
    expect(submitFields(s)?.human_completion).toBe("x = 3");
    s = reduce(s, { type: "setHumanCompletion", text: "   " });
    expect(submitFields(s)?.human_completion).toBeNull();
  });
});

describe("validateSubmit mirrors the server", () => {
  const base = { flags: [], human_completion: null, finish_note: "" };

  it("accepts every label the state machine produces", () => {
    const sessions = [
      run(sessionStart(1, 2), rate(1), rate(1)),
      run(sessionStart(1, 2), rate(0), rate(-1)),
      run(sessionStart(1, 2), { type: "finishEarly", reason: "give_up", note: "x" }),
    ];
    for (const s of sessions) {
      expect(validateSubmit(submitFields(s)!, 2)).toEqual({});
    }
  });

  it("rejects found_error whose last rating is not Bad", () => {
    const e = validateSubmit({ ...base, ratings: [1], flags: [false], finish_reason: "found_error" }, 3);
    expect(e.finish_reason?.[0]).toMatch(/last rated step to be Bad/);
  });

  it("rejects a Bad step before the last rating", () => {
    const e = validateSubmit({ ...base, ratings: [-1, 1], flags: [false, false], finish_reason: "give_up", finish_note: "x" }, 3);
    expect(e.ratings?.[0]).toMatch(/step 1 is Bad/);
  });

  it("rejects solution with missing steps or a Bad step", () => {
    expect(validateSubmit({ ...base, ratings: [1], flags: [false], finish_reason: "solution" }, 2).finish_reason).toBeDefined();
    expect(
      validateSubmit({ ...base, ratings: [1, -1], flags: [false, false], finish_reason: "solution" }, 2).finish_reason,
    ).toBeDefined();
  });

  it("requires a note for give_up and bad_problem", () => {
    const e = validateSubmit({ ...base, ratings: [], flags: [], finish_reason: "bad_problem" }, 2);
    expect(e.finish_note).toEqual(["a reason is required for bad_problem"]);
  });

  it("rejects flags that do not match the ratings and too many ratings", () => {
    const e = validateSubmit({ ...base, ratings: [1, 1, 1], flags: [false], finish_reason: "solution" }, 2);
    expect(e.flags).toBeDefined();
    expect(e.ratings?.[0]).toMatch(/3 ratings but the solution has 2 steps/);
  });
});

describe("sessionRestore", () => {
  it("round-trips through JSON", () => {
    const s = run(sessionStart(5, 3), rate(1), { type: "toggleFlag" });
    expect(sessionRestore(JSON.parse(JSON.stringify(s)), 5, 3)).toEqual(s);
  });

  it("rebuilds the undo history of a draft saved without one", () => {
    const s = run(sessionStart(5, 3), rate(1), { type: "toggleFlag" });
    const { history: _dropped, ...old } = JSON.parse(JSON.stringify(s));
    const restored = sessionRestore(old, 5, 3)!;
    expect(restored.history).toEqual(s.history);
    expect(reduce(restored, { type: "undo" }).ratings).toEqual([1]);
    expect(sessionRestore({ ...old, history: [{ kind: "rate" }, { kind: "bogus" }] }, 5, 3)!.history).toEqual(
      s.history,
    );
  });

  it("refuses a draft for another task, another step count, or with bad data", () => {
    const s = run(sessionStart(5, 3), rate(1));
    const raw = JSON.parse(JSON.stringify(s));
    expect(sessionRestore(raw, 6, 3)).toBeNull();
    expect(sessionRestore(raw, 5, 4)).toBeNull();
    expect(sessionRestore({ ...raw, ratings: [2] }, 5, 3)).toBeNull();
    expect(sessionRestore({ ...raw, finishReason: "nope" }, 5, 3)).toBeNull();
    expect(sessionRestore("garbage", 5, 3)).toBeNull();
  });
});

describe("Stopwatch", () => {
  it("counts only the time it runs", () => {
    const w = new Stopwatch();
    w.start(1000);
    expect(w.elapsed(3000)).toBe(2000);
    w.pause(3000);
    expect(w.elapsed(10_000)).toBe(2000); // hidden tab: not counted
    w.start(10_000);
    w.start(11_000); // a second start does not reset
    expect(w.elapsed(12_500)).toBe(4500);
  });

  it("continues from a restored total", () => {
    const w = new Stopwatch(60_000);
    expect(w.elapsed(5)).toBe(60_000);
    w.start(0);
    expect(w.elapsed(1000)).toBe(61_000);
  });
});
