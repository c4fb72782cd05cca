// Labels the server refused for good stay in view until the annotator dismisses them: the page
// says which task and why as soon as the answer comes (before they go on to other work), and
// the draft holding their ratings stays in this browser until then (decision 0003). Most late
// work is accepted; what is left here is rare (a hold taken back more than a day ago, a task
// labeled twice, a paused account).
import { RATING_NAMES, type Rating } from "./session";
import type { Draft, KeyValueStore } from "./storage";

export interface RefusedLabel {
  taskId: number;
  status: number;
  reason: string; // the server's own words
  refusedAt: number;
}

export class RefusedStore {
  private readonly key: string;

  constructor(
    private readonly store: KeyValueStore,
    user: string,
  ) {
    this.key = `stepwise:${user}:refused`;
  }

  entries(): RefusedLabel[] {
    let parsed: unknown;
    try {
      parsed = JSON.parse(this.store.getItem(this.key) ?? "[]");
    } catch {
      return [];
    }
    if (!Array.isArray(parsed)) {
      return [];
    }
    return parsed.filter(
      (e): e is RefusedLabel =>
        typeof e === "object" &&
        e !== null &&
        Number.isInteger(e.taskId) &&
        typeof e.status === "number" &&
        typeof e.reason === "string" &&
        typeof e.refusedAt === "number",
    );
  }

  private write(entries: RefusedLabel[]): void {
    if (entries.length) {
      this.store.setItem(this.key, JSON.stringify(entries));
    } else {
      this.store.removeItem(this.key);
    }
  }

  /** Records a refusal; a later one for the same task replaces it. */
  add(entry: RefusedLabel): void {
    this.write([...this.entries().filter((e) => e.taskId !== entry.taskId), entry]);
  }

  remove(taskId: number): void {
    this.write(this.entries().filter((e) => e.taskId !== taskId));
  }

  taskIds(): number[] {
    return this.entries().map((e) => e.taskId);
  }
}

/** What the refusal means for the annotator, in words they can act on. */
export function refusalText(status: number, reason: string): string {
  switch (status) {
    case 404:
      return "Your hold on this task ran out too long ago for the label to be accepted.";
    case 409:
      return "You had already labeled this task, so this second label was not saved.";
    case 422:
      // The same task sent twice with different ratings (a second tab, a restored draft).
      return "You had already submitted this task (perhaps in another tab); the label saved first is kept.";
    case 403:
      return `You cannot label right now: ${reason}`;
    default:
      return `The server did not accept it: ${reason}`;
  }
}

/** "Great, Okay, Bad" for the draft's ratings, or "" when there is no draft. */
export function ratingsSummary(draft: Draft | null): string {
  const ratings = draft?.session.ratings ?? [];
  return ratings.map((r: Rating) => RATING_NAMES[r]).join(", ");
}

/**
 * Shows one notice per refused label in `panel` (hidden when there are none), each with a
 * Dismiss button that calls `dismiss(taskId)`.
 */
export function renderRefused(
  panel: HTMLElement,
  entries: RefusedLabel[],
  draftOf: (taskId: number) => Draft | null,
  dismiss: (taskId: number) => void,
): void {
  panel.hidden = entries.length === 0;
  panel.replaceChildren(
    ...entries.map((entry) => {
      const item = document.createElement("div");
      item.className = "notice error refused-item";
      item.setAttribute("role", "alert");
      item.dataset.taskId = String(entry.taskId);
      const title = document.createElement("p");
      const strong = document.createElement("strong");
      strong.textContent = `Your label for task ${entry.taskId} was not saved.`;
      title.append(strong, ` ${refusalText(entry.status, entry.reason)}`);
      const kept = document.createElement("p");
      kept.className = "refused-kept";
      const summary = ratingsSummary(draftOf(entry.taskId));
      kept.textContent = summary
        ? `Your ratings (${summary}) stay saved in this browser until you dismiss this.`
        : "Dismiss this when you have read it.";
      const button = document.createElement("button");
      button.type = "button";
      button.className = "btn";
      button.textContent = "Dismiss";
      button.addEventListener("click", () => dismiss(entry.taskId));
      item.append(title, kept, button);
      return item;
    }),
  );
}
