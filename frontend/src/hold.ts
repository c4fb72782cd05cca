// What the page does when a heartbeat finds its hold on the task gone. The server says why
// (`code`) and whether work on the task is still kept (decision 0003: late work is kept while
// the taken-back hold is remembered), so the banner never promises what the submit won't do.
import { ApiError } from "./api";

export type HoldLost =
  /** Already labeled (another tab, another device): drop the draft and go on. */
  | { action: "drop"; text: string }
  /** Work is still kept: the annotator may finish and submit; the draft stays. */
  | { action: "keep"; level: "info" | "warn"; text: string }
  /** A label would be refused: say so, and offer to skip. */
  | { action: "lost"; text: string };

function until(keptUntil: unknown): string {
  if (typeof keptUntil !== "string") {
    return "";
  }
  const when = new Date(keptUntil);
  if (Number.isNaN(when.getTime())) {
    return "";
  }
  const time = when.toLocaleString(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit" });
  return ` (if you submit before ${time})`;
}

/** The page's answer to a refused heartbeat, or null when it is not about the hold. */
export function holdLost(err: unknown, taskId: number): HoldLost | null {
  if (!(err instanceof ApiError)) {
    return null;
  }
  const body = (err.body ?? {}) as Record<string, unknown>;
  if (err.status === 409 && err.code === "already_labeled") {
    return {
      action: "drop",
      text: `You already submitted task ${taskId} (perhaps in another tab or window), so it was put away. Here is your next task.`,
    };
  }
  if (err.status === 409 && err.code === "held_by_another") {
    return {
      action: "keep",
      level: "warn",
      text:
        "Your hold on this task ran out and another annotator has it now. Your work is still kept: " +
        `finish and submit, and it is saved as an extra label${until(body.kept_until)}.`,
    };
  }
  if (err.status === 409 && err.code === "taken_back") {
    return {
      action: "keep",
      level: "info",
      text: `Your hold on this task ran out, but the task still needs a label: finish and submit, and your work is saved${until(body.kept_until)}.`,
    };
  }
  if (err.status === 404) {
    return {
      action: "lost",
      text: "Your hold on this task ran out too long ago: a label for it would not be saved. Skip it to go on to the next task.",
    };
  }
  return null;
}
