// The labeling session as a pure state machine: every action returns a new state and nothing
// here touches the DOM, storage or the network, so the rules are unit-tested on their own.
// Validation mirrors the server's (labeling/services/labels.py) so a bad label is caught here.

export type Rating = -1 | 0 | 1;
export type FinishReason = "found_error" | "solution" | "bad_problem" | "give_up";

export const RATING_NAMES: Record<Rating, string> = { [-1]: "Bad", 0: "Okay", 1: "Great" };

/**
 * What Backspace takes back, newest last: a rating, a flag toggled on a step, or a decision
 * to stop early (with what the finish was before it). Undo reverses exactly the last one.
 */
export type UndoEntry =
  | { readonly kind: "rate" }
  | { readonly kind: "flag"; readonly step: number }
  | { readonly kind: "finish"; readonly previous: FinishReason | null; readonly note: string };

export interface SessionState {
  readonly taskId: number;
  readonly stepCount: number;
  readonly ratings: readonly Rating[];
  /** One per step of the solution; only the rated prefix is sent. */
  readonly flags: readonly boolean[];
  readonly finishReason: FinishReason | null;
  readonly finishNote: string;
  readonly humanCompletion: string;
  readonly history: readonly UndoEntry[];
}

export interface SubmitFields {
  ratings: Rating[];
  flags: boolean[];
  human_completion: string | null;
  finish_reason: FinishReason;
  finish_note: string;
}

export type Action =
  | { type: "rate"; rating: Rating }
  | { type: "toggleFlag" }
  | { type: "undo" }
  | { type: "finishEarly"; reason: "bad_problem" | "give_up"; note: string }
  | { type: "setHumanCompletion"; text: string };

export function sessionStart(taskId: number, stepCount: number): SessionState {
  if (!Number.isInteger(stepCount) || stepCount < 1) {
    throw new Error(`task ${taskId} has no steps to rate`);
  }
  return {
    taskId,
    stepCount,
    ratings: [],
    flags: Array<boolean>(stepCount).fill(false),
    finishReason: null,
    finishNote: "",
    humanCompletion: "",
    history: [],
  };
}

export function isFinished(s: SessionState): boolean {
  return s.finishReason !== null;
}

/**
 * The step the annotator is looking at: the next one to rate, or the last rated one once the
 * task is finished (that is where a flag or a corrected step belongs).
 */
export function currentStep(s: SessionState): number {
  if (s.finishReason === null) {
    return Math.min(s.ratings.length, s.stepCount - 1);
  }
  return Math.max(0, s.ratings.length - 1);
}

/** How many steps are on screen: every rated step plus the one being rated. */
export function visibleSteps(s: SessionState): number {
  return s.finishReason === null ? Math.min(s.ratings.length + 1, s.stepCount) : s.ratings.length;
}

export function reduce(s: SessionState, action: Action): SessionState {
  switch (action.type) {
    case "rate": {
      if (s.finishReason !== null || s.ratings.length >= s.stepCount) {
        return s;
      }
      const ratings = [...s.ratings, action.rating];
      // Phase 2: the first Bad step ends the task; a full run without one is a solution.
      let finishReason: FinishReason | null = null;
      if (action.rating === -1) {
        finishReason = "found_error";
      } else if (ratings.length === s.stepCount) {
        finishReason = "solution";
      }
      return { ...s, ratings, finishReason, history: [...s.history, { kind: "rate" }] };
    }
    case "toggleFlag": {
      const i = currentStep(s);
      const flags = s.flags.map((f, j) => (j === i ? !f : f));
      const last = s.history[s.history.length - 1];
      // Flagging the same step twice in a row cancels out, so the history stays short.
      const history =
        last?.kind === "flag" && last.step === i ? s.history.slice(0, -1) : [...s.history, { kind: "flag" as const, step: i }];
      return { ...s, flags, history };
    }
    case "undo":
      return undo(s);
    case "finishEarly": {
      const note = action.note.trim();
      if (!note) {
        return s; // a reason is required; the UI keeps the dialog open
      }
      const entry: UndoEntry = { kind: "finish", previous: s.finishReason, note: s.finishNote };
      return { ...s, finishReason: action.reason, finishNote: note, history: [...s.history, entry] };
    }
    case "setHumanCompletion":
      return { ...s, humanCompletion: action.text };
  }
}

/** Takes back the last action only: a flag after a rating is undone before the rating. */
function undo(s: SessionState): SessionState {
  const last = s.history[s.history.length - 1];
  if (last === undefined) {
    return s;
  }
  const history = s.history.slice(0, -1);
  switch (last.kind) {
    case "flag":
      return { ...s, flags: s.flags.map((f, j) => (j === last.step ? !f : f)), history };
    case "finish":
      // Undo the decision to stop; the ratings made so far stay.
      return { ...s, finishReason: last.previous, finishNote: last.note, history };
    case "rate": {
      const undone = s.ratings.length - 1;
      if (undone < 0) {
        return s;
      }
      // The corrected step belonged to the Bad step being undone.
      const humanCompletion = s.finishReason === "found_error" ? "" : s.humanCompletion;
      return { ...s, ratings: s.ratings.slice(0, undone), finishReason: null, humanCompletion, history };
    }
  }
}

/**
 * The history of a draft saved before the page kept one: each step's flag (made while it was
 * the current step) before its rating, then a decision to stop.
 */
function historyRebuilt(ratings: readonly Rating[], flags: readonly boolean[], finish: FinishReason | null): UndoEntry[] {
  const history: UndoEntry[] = [];
  flags.forEach((flagged, step) => {
    if (flagged) {
      history.push({ kind: "flag", step });
    }
    if (step < ratings.length) {
      history.push({ kind: "rate" });
    }
  });
  if (finish === "bad_problem" || finish === "give_up") {
    history.push({ kind: "finish", previous: null, note: "" });
  }
  return history;
}

function historyValid(raw: unknown, ratings: readonly Rating[], stepCount: number): raw is UndoEntry[] {
  if (!Array.isArray(raw)) {
    return false;
  }
  const reasons: unknown[] = ["found_error", "solution", "bad_problem", "give_up", null];
  const ok = raw.every(
    (e) =>
      typeof e === "object" &&
      e !== null &&
      (e.kind === "rate" ||
        (e.kind === "flag" && Number.isInteger(e.step) && e.step >= 0 && e.step < stepCount) ||
        (e.kind === "finish" && reasons.includes(e.previous) && typeof e.note === "string")),
  );
  return ok && raw.filter((e: UndoEntry) => e.kind === "rate").length === ratings.length;
}

/** Field → messages, the same shape as a DRF 400 body. Empty when the label can be sent. */
export type FieldErrors = Record<string, string[]>;

export function validateSubmit(fields: SubmitFields, stepCount: number): FieldErrors {
  const errors: FieldErrors = {};
  const add = (field: string, message: string) => {
    (errors[field] ??= []).push(message);
  };
  const { ratings, flags, finish_reason: reason } = fields;
  if (ratings.length > stepCount) {
    add("ratings", `has ${ratings.length} ratings but the solution has ${stepCount} steps`);
  }
  ratings.forEach((r, i) => {
    if (r !== -1 && r !== 0 && r !== 1) {
      add("ratings", `step ${i + 1}: rating must be -1, 0 or 1`);
    }
  });
  if (flags.length !== ratings.length) {
    add("flags", `has ${flags.length} entries for ${ratings.length} ratings`);
  }
  const firstBad = ratings.indexOf(-1);
  const badBeforeLast = firstBad !== -1 && firstBad < ratings.length - 1;
  if (badBeforeLast) {
    add("ratings", `step ${firstBad + 1} is Bad, so rating must stop there`);
  }
  switch (reason) {
    case "found_error":
      if (ratings.length === 0 || ratings[ratings.length - 1] !== -1) {
        add("finish_reason", "found_error needs the last rated step to be Bad");
      }
      break;
    case "solution":
      if (ratings.length !== stepCount) {
        add("finish_reason", `solution needs all ${stepCount} steps rated`);
      } else if (firstBad !== -1) {
        add("finish_reason", "solution cannot contain a Bad step");
      }
      break;
    case "bad_problem":
    case "give_up":
      if (!fields.finish_note.trim()) {
        add("finish_note", `a reason is required for ${reason}`);
      }
      break;
    default:
      add("finish_reason", `unknown finish reason ${String(reason)}`);
  }
  if (fields.human_completion !== null && reason !== "found_error") {
    add("human_completion", "a corrected step only goes with found_error");
  }
  return errors;
}

/** The label fields for the API, or null while the task is not finished. */
export function submitFields(s: SessionState): SubmitFields | null {
  if (s.finishReason === null) {
    return null;
  }
  const text = s.humanCompletion.trim();
  return {
    ratings: [...s.ratings],
    flags: s.flags.slice(0, s.ratings.length),
    human_completion: s.finishReason === "found_error" && text ? text : null,
    finish_reason: s.finishReason,
    finish_note: s.finishReason === "bad_problem" || s.finishReason === "give_up" ? s.finishNote : "",
  };
}

/** Restores a session saved by an earlier page load, refusing anything that does not fit. */
export function sessionRestore(raw: unknown, taskId: number, stepCount: number): SessionState | null {
  if (typeof raw !== "object" || raw === null) {
    return null;
  }
  const r = raw as Partial<Record<keyof SessionState, unknown>>;
  if (r.taskId !== taskId || r.stepCount !== stepCount) {
    return null;
  }
  const ratings = r.ratings;
  const flags = r.flags;
  if (
    !Array.isArray(ratings) ||
    !ratings.every((x) => x === -1 || x === 0 || x === 1) ||
    ratings.length > stepCount ||
    !Array.isArray(flags) ||
    flags.length !== stepCount ||
    !flags.every((x) => typeof x === "boolean")
  ) {
    return null;
  }
  const reasons: (FinishReason | null)[] = ["found_error", "solution", "bad_problem", "give_up", null];
  if (!reasons.includes(r.finishReason as FinishReason | null)) {
    return null;
  }
  const finishReason = r.finishReason as FinishReason | null;
  return {
    taskId,
    stepCount,
    ratings: ratings as Rating[],
    flags: flags as boolean[],
    finishReason,
    finishNote: typeof r.finishNote === "string" ? r.finishNote : "",
    humanCompletion: typeof r.humanCompletion === "string" ? r.humanCompletion : "",
    history: historyValid(r.history, ratings as Rating[], stepCount)
      ? r.history
      : historyRebuilt(ratings as Rating[], flags as boolean[], finishReason),
  };
}

/**
 * Time on task that only runs while the tab is visible. Times come from an injected clock
 * (ms) so the tests drive it; the UI passes `performance.now()`-like values.
 */
export class Stopwatch {
  private accumulated: number;
  private runningSince: number | null = null;

  constructor(initialMs = 0) {
    this.accumulated = Math.max(0, initialMs);
  }

  start(now: number): void {
    if (this.runningSince === null) {
      this.runningSince = now;
    }
  }

  pause(now: number): void {
    if (this.runningSince !== null) {
      this.accumulated += Math.max(0, now - this.runningSince);
      this.runningSince = null;
    }
  }

  get running(): boolean {
    return this.runningSince !== null;
  }

  elapsed(now: number): number {
    const live = this.runningSince === null ? 0 : Math.max(0, now - this.runningSince);
    return Math.round(this.accumulated + live);
  }
}
