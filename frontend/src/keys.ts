// Keyboard map of the rating page, kept pure so the bindings are tested without a browser.
import type { Rating } from "./session";

export type Command =
  | { type: "rate"; rating: Rating }
  | { type: "flag" }
  | { type: "undo" }
  | { type: "giveUp" }
  | { type: "badProblem" }
  | { type: "submit" }
  | { type: "correct" }
  | { type: "help" };

export interface KeyInput {
  key: string;
  ctrlKey: boolean;
  metaKey: boolean;
  altKey: boolean;
}

const RATING_KEYS: Record<string, Rating> = {
  "1": -1,
  "-": -1,
  "2": 0,
  "0": 0,
  "3": 1,
  "+": 1,
  "=": 1, // the unshifted "+" key
};

export const KEY_HELP: [string, string][] = [
  ["1  or  −", "Bad: the step is wrong or unreasonable (ends the task)"],
  ["2  or  0", "Okay: correct but no progress, or ambiguous"],
  ["3  or  +", "Great: correct, reasonable, makes progress"],
  ["F", "Flag the current step (not sure how to rate it)"],
  ["Backspace", "Undo the last action (a rating, a flag or giving up)"],
  ["C", "Write the corrected step (after a Bad rating)"],
  ["G", "Give up on this task (asks for a reason)"],
  ["B", "Report a bad problem (asks for a reason)"],
  ["Enter", "Submit when the task is finished (Ctrl+Enter inside a text box)"],
  ["?", "Show or hide this help"],
];

/** The page command for a key press outside text boxes, or null to let the browser have it. */
export function commandForKey(e: KeyInput): Command | null {
  // Leave browser and OS shortcuts (Ctrl+R, Cmd+1, Alt+←) alone.
  if (e.ctrlKey || e.metaKey || e.altKey) {
    return null;
  }
  const rating = RATING_KEYS[e.key];
  if (rating !== undefined) {
    return { type: "rate", rating };
  }
  switch (e.key) {
    case "f":
    case "F":
      return { type: "flag" };
    case "Backspace":
      return { type: "undo" };
    case "g":
    case "G":
      return { type: "giveUp" };
    case "b":
    case "B":
      return { type: "badProblem" };
    case "c":
    case "C":
      return { type: "correct" };
    case "Enter":
      return { type: "submit" };
    case "?":
      return { type: "help" };
    default:
      return null;
  }
}

/** True when the key press belongs to a text field (so page shortcuts must not fire). */
export function isTypingTarget(target: EventTarget | null): boolean {
  if (!target || typeof (target as HTMLElement).tagName !== "string") {
    return false;
  }
  const el = target as HTMLElement;
  const tag = el.tagName.toLowerCase();
  if (tag === "textarea" || tag === "select" || el.isContentEditable) {
    return true;
  }
  if (tag === "input") {
    const type = ((el as HTMLInputElement).type || "text").toLowerCase();
    return !["button", "checkbox", "radio", "submit", "reset", "range", "color"].includes(type);
  }
  return false;
}
